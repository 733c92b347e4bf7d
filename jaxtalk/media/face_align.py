"""Face crops by similarity transforms that put the eyes at fixed places, per frame or per clip.

A frame's alignment is four numbers: the eye midpoint (x, y) in frame pixels, the distance between
the eyes, and the roll of the eye line. The transform maps them onto `CANONICAL_EYES` in the output
square, so in a clip aligned frame by frame the face stays upright, still and of one size while
the head moves. Frames where the eyes were not found take them from the face box, placed as the
eyes sit in the box in this clip's own frames where they were found. The four numbers are then
smoothed over time with a Savitzky-Golay filter: zero phase (no lag) and exact for motion that is
locally a parabola, so the crop follows the head's travel and roll but not the landmarks' jitter.

A still crop (`still_parameters`) is one alignment for a whole clip, the median of its frames':
the eyes sit at the canonical places on average while the head moves, rolls and zooms inside the
frame, as a motion model must see it. It holds only while the face stays inside (`stays_in_crop`).
"""

import math

import cv2
import numpy as np
from scipy import signal

from jaxtalk.media.face_landmarks import EYES_IN_BOX
from jaxtalk.media.face_track import Face

# Eye centres in the output square, as fractions of its side: where the portrait framing
# (`face_detect.face_crop_box`, 1.6x the LBP face box) puts the eyes of scikit-image's astronaut
# photograph, so aligned video crops show faces at the scale portraits are framed at.
CANONICAL_EYES = np.array([[0.34, 0.415], [0.66, 0.415]])
# The smoothing window (frames at 25 fps: 0.44 s) and the order of the polynomial fitted in it.
SMOOTHING_FRAMES = 11
_SMOOTHING_ORDER = 2
# An eye measurement this far from its neighbours' median (in eye distances, and degrees of roll)
# is a wrong pair (a brow, a nostril), and is replaced by the box estimate.
_OUTLIER_SHIFT = 0.15
_OUTLIER_ROLL = 8.0
_OUTLIER_WINDOW = 7
# The face box (dlib's, placed around the eyes as EYES_IN_BOX says) in a crop aligned to the
# frame's own eyes: its side and centre as fractions of the crop's side. EYES_IN_BOX's slight
# tilt (its eyes 0.02 box sides apart in height) is left out.
_CANONICAL_DISTANCE = CANONICAL_EYES[1, 0] - CANONICAL_EYES[0, 0]
_BOX_SIDE = _CANONICAL_DISTANCE / (EYES_IN_BOX[1, 0] - EYES_IN_BOX[0, 0])
_BOX_CENTRE = CANONICAL_EYES.mean(axis=0) + (0.5 - EYES_IN_BOX.mean(axis=0)) * _BOX_SIDE
# A still crop keeps a face whose box sticks out of it by at most this fraction of the box's
# side: the brow, chin or an ear may leave, the eyes (0.26 box sides in from its sides) and the
# mouth (down to 0.83 of its height, on the astronaut) stay in view.
STILL_CROP_MARGIN = 0.15


def eye_parameters(eyes: np.ndarray) -> np.ndarray:
  """[midpoint x, midpoint y, eye distance, roll in radians] of eye centres [[x, y], [x, y]]."""
  left, right = eyes
  dx, dy = right - left
  return np.array([*(left + right) / 2, math.hypot(dx, dy), math.atan2(dy, dx)])


def _rotate(vectors: np.ndarray, radians: float) -> np.ndarray:
  cos, sin = math.cos(radians), math.sin(radians)
  return vectors @ np.array([[cos, sin], [-sin, cos]])


def _box_frame(face: Face, points: np.ndarray) -> np.ndarray:
  """Points in frame pixels -> the face box's own frame (unrolled, in box sides from its centre)."""
  return _rotate(points - [face.x, face.y], -math.radians(face.roll)) / face.size


def _from_box_frame(face: Face, points: np.ndarray) -> np.ndarray:
  return _rotate(points * face.size, math.radians(face.roll)) + [face.x, face.y]


def track_parameters(faces: list[Face], eyes: list[np.ndarray | None]) -> np.ndarray:
  """The smoothed alignment parameters [T, 4] of a clean span of frames (see module docstring).

  `faces` are the frames' face boxes, `eyes` their eye centres where found (else None).
  """
  found = [index for index, pair in enumerate(eyes) if pair is not None]
  found = _without_outliers(found, eyes)
  if found:
    in_box = np.median([_box_frame(faces[i], eyes[i]) for i in found], axis=0)
  else:
    in_box = EYES_IN_BOX - 0.5
  estimates = {i: eyes[i] for i in found}
  raw = np.array(
    [
      eye_parameters(estimates[i] if i in estimates else _from_box_frame(face, in_box))
      for i, face in enumerate(faces)
    ]
  )
  raw[:, 3] = np.unwrap(raw[:, 3])
  window = min(SMOOTHING_FRAMES, len(faces) - (1 - len(faces) % 2))
  if window <= _SMOOTHING_ORDER:
    return raw
  return signal.savgol_filter(raw, window, _SMOOTHING_ORDER, axis=0, mode="interp")


def _without_outliers(found: list[int], eyes: list[np.ndarray | None]) -> list[int]:
  """The frames in `found` whose eye pair agrees with the median of the pairs around it."""
  if len(found) < 3:
    return found
  parameters = np.array([eye_parameters(eyes[i]) for i in found])
  half = _OUTLIER_WINDOW // 2
  kept = []
  for n, index in enumerate(found):
    median = np.median(parameters[max(0, n - half) : n + half + 1], axis=0)
    shift = math.hypot(*(parameters[n, :2] - median[:2])) / median[2]
    scale = abs(math.log(parameters[n, 2] / median[2]))
    roll = abs(math.degrees(parameters[n, 3] - median[3]))
    if shift < _OUTLIER_SHIFT and scale < _OUTLIER_SHIFT and roll < _OUTLIER_ROLL:
      kept.append(index)
  return kept


def eyes_of(parameters: np.ndarray) -> np.ndarray:
  """The eye centres [..., 2, 2] that alignment parameters [..., 4] describe: `eye_parameters`'s
  inverse."""
  middle, distance, roll = parameters[..., :2], parameters[..., 2], parameters[..., 3]
  half = (distance / 2)[..., None] * np.stack([np.cos(roll), np.sin(roll)], axis=-1)
  return np.stack([middle - half, middle + half], axis=-2)


def still_parameters(parameters: np.ndarray) -> np.ndarray:
  """One alignment [4] for the frames of a clip, from their smoothed alignments [T, 4].

  The median of each number: the crop's eyes sit where half the frames' are on either side, and
  a few frames of a glance away or a bad fit do not move it.
  """
  return np.median(parameters, axis=0)


def stays_in_crop(parameters: np.ndarray, still: np.ndarray) -> bool:
  """Whether every frame's face (alignments [T, 4]) is inside the crop of alignment `still`.

  Inside means its box sticks out of the crop by at most STILL_CROP_MARGIN of its side, as
  `face_track.frame_problem` tells a face in the frame, centre against an inset edge.
  """
  # Each frame's box centre: in its own aligned crop, back to the frame, into the still crop.
  middle, distance, roll = parameters[:, :2], parameters[:, 2], parameters[:, 3]
  offset = (_BOX_CENTRE - CANONICAL_EYES.mean(axis=0)) * (distance / _CANONICAL_DISTANCE)[:, None]
  cos, sin = np.cos(roll), np.sin(roll)
  in_frame = middle + np.stack(
    [cos * offset[:, 0] - sin * offset[:, 1], sin * offset[:, 0] + cos * offset[:, 1]], axis=1
  )
  centre = np.c_[in_frame, np.ones(len(in_frame))] @ crop_transform(still, 1).T
  inset = (0.5 - STILL_CROP_MARGIN) * _BOX_SIDE * distance / still[2]
  return bool(np.all((centre >= inset[:, None]) & (centre <= 1 - inset[:, None])))


def crop_transform(parameters: np.ndarray, side: int) -> np.ndarray:
  """The 2x3 similarity transform from frame pixels to the `side`-px aligned crop."""
  x, y, distance, roll = parameters
  canonical = CANONICAL_EYES * side
  scale = _CANONICAL_DISTANCE * side / distance
  cos, sin = scale * math.cos(roll), scale * math.sin(roll)
  linear = np.array([[cos, sin], [-sin, cos]])
  return np.concatenate([linear, (canonical.mean(axis=0) - linear @ [x, y])[:, None]], axis=1)


def aligned_crop(frame: np.ndarray, parameters: np.ndarray, side: int) -> np.ndarray:
  """The `side` x `side` aligned crop of a uint8 RGB frame; outside the frame repeats its edge.

  A crop that shrinks the face is warped at an integer multiple of `side` first and then
  area-averaged down, so fine detail does not alias.
  """
  transform = crop_transform(parameters, side)
  shrink = min(4, max(1, math.ceil(1 / math.hypot(*transform[0, :2]))))
  fine = transform * shrink
  # Pixel centres: crop pixel j is the mean of fine pixels j * shrink ... j * shrink + shrink - 1.
  fine[:, 2] += (shrink - 1) / 2
  warped = cv2.warpAffine(
    frame,
    fine,
    (side * shrink, side * shrink),
    flags=cv2.INTER_LINEAR,
    borderMode=cv2.BORDER_REPLICATE,
  )
  if shrink == 1:
    return warped
  return cv2.resize(warped, (side, side), interpolation=cv2.INTER_AREA)
