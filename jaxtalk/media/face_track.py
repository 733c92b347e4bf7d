"""Faces found and followed through a video, for cutting real footage into clean talking-head clips.

Detection is dlib's HOG frontal-face detector (`dlib.get_frontal_face_detector`): it is built into
the dlib library, so no model file is downloaded. dlib is under the Boost Software License 1.0.
Its five sub-detectors cover frontal faces, faces turned left and right, and faces rolled by about
20 to 40 degrees either way; a frame where none of them fires is tried again rotated by
`RETRY_ROTATIONS`, which reaches heads tilted up to about 80 degrees.

Detection runs on a scene's first and last frame and every k-th in between; the face box of the
frames in between is interpolated. Measured on the astronaut photo moving, wobbling, rolling and
shrinking at 25 fps: with k = 5 the box centre is off by 4.5% of the face size on average (8% at
most), as good as detecting on every frame (4.7%: the detector's own jitter) and as dlib's
correlation tracker re-started at every detection (4.9%), at 22 ms a frame against 130 and 36.
The box only places the eye search and stands in where no eyes are found, so this is plenty.
"""

import dataclasses
import functools
import math
from collections.abc import Iterable, Iterator

import cv2
import dlib
import numpy as np

# dlib's detector scans an 80x80 px window over an image pyramid, so at scale 1 it finds faces
# from 80 px up; frames are enlarged by DLIB_WINDOW_PX / min face size to find smaller ones.
DLIB_WINDOW_PX = 80
# ...but never beyond this many pixels: 640x480 takes about 0.13 s a frame on one CPU core. So
# in larger videos the smallest face found is larger than the minimum: about 210 px at 1080p.
MAX_DETECTION_PIXELS = 640 * 480
# Angles (degrees, counter-clockwise) the frame is rotated by when nothing is found upright.
RETRY_ROTATIONS = (40.0, -40.0)
# The roll of the eye line (degrees, clockwise in image coordinates) that dlib's rolled
# sub-detectors 3 and 4 fire on, measured on rotated photographs: each covers about 20 to 40.
_SUB_DETECTOR_ROLL = {3: -30.0, 4: 30.0}
# A second face this large beside the speaker takes the clip over (a dialogue, an interviewer).
SECOND_FACE_RATIO = 0.6
# ...when dlib is this sure of it: real faces score about 0.7 to 2, while the few false detections
# seen (on clothes, at the rolled sub-detectors) scored below 0.3. The speaker needs only 0.
SECOND_FACE_MIN_SCORE = 0.4
# A face box sticking out of the frame by more than this fraction of its side is leaving it.
EDGE_TOLERANCE = 0.1
# Faces down to this fraction of the minimum size are still found, so that a face shrinking
# past the minimum is reported as too small rather than lost.
_DETECT_BELOW_MIN = 0.8


@dataclasses.dataclass(frozen=True)
class Face:
  """A face box in frame pixels: its centre, side, and roughly how far the head is rolled."""

  x: float
  y: float
  size: float
  roll: float  # degrees: the eye line's angle, clockwise in image coordinates (y down)
  score: float  # dlib's detection score: the larger, the surer

  def lerp(self, other: "Face", fraction: float) -> "Face":
    return Face(
      *(
        a + fraction * (b - a)
        for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))
      )
    )


@dataclasses.dataclass(frozen=True)
class TrackedFrame:
  """One frame of a video with its speaker's face, or the reason it cannot be used."""

  frame: np.ndarray  # uint8 RGB [H, W, 3]
  face: Face | None
  problem: str | None  # None for a usable frame; else a short reason such as "no face found"


@functools.cache
def _detector():
  return dlib.get_frontal_face_detector()


def _detection_scale(height: int, width: int, min_face_px: float) -> float:
  scale = DLIB_WINDOW_PX / (_DETECT_BELOW_MIN * min_face_px)
  return min(scale, math.sqrt(MAX_DETECTION_PIXELS / (height * width)))


def detect_faces(frame: np.ndarray, min_face_px: float) -> list[Face]:
  """Every face in a uint8 RGB frame at least about `min_face_px` wide, largest first.

  Tries the upright frame first, then the frame rotated by each of `RETRY_ROTATIONS` until one
  finds a face.
  """
  height, width = frame.shape[:2]
  scale = _detection_scale(height, width, min_face_px)
  scaled = cv2.resize(
    frame,
    (round(width * scale), round(height * scale)),
    interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
  )
  for angle in (0.0, *RETRY_ROTATIONS):
    faces = _detect_rotated(scaled, angle)
    if faces:
      return sorted(
        (
          Face(face.x / scale, face.y / scale, face.size / scale, face.roll, face.score)
          for face in faces
        ),
        key=lambda face: -face.size,
      )
  return []


def _detect_rotated(image: np.ndarray, angle: float) -> list[Face]:
  """Faces in `image` rotated counter-clockwise by `angle` degrees, in `image`'s own coordinates."""
  height, width = image.shape[:2]
  centre = (width / 2, height / 2)
  to_rotated = cv2.getRotationMatrix2D(centre, angle, 1.0)
  rotated = (
    image
    if angle == 0
    else cv2.warpAffine(image, to_rotated, (width, height), borderMode=cv2.BORDER_REPLICATE)
  )
  boxes, scores, sub_detectors = _detector().run(rotated, 0, 0.0)
  back = cv2.invertAffineTransform(to_rotated)
  faces = []
  for box, score, sub_detector in zip(boxes, scores, sub_detectors):
    x, y = back @ np.array([(box.left() + box.right()) / 2, (box.top() + box.bottom()) / 2, 1.0])
    # Rotating the image counter-clockwise by `angle` rolls the eye line by -angle.
    roll = _SUB_DETECTOR_ROLL.get(sub_detector, 0.0) + angle
    faces.append(Face(float(x), float(y), float(box.width()), roll, score))
  return faces


def frame_problem(
  face: Face | None, others: list[Face], height: int, width: int, min_face_px: float
) -> str | None:
  """Why a frame whose speaker is `face` (others: the rest of the faces found) makes no clean clip."""
  if face is None:
    return "no face found"
  if face.size < min_face_px:
    return f"face smaller than {min_face_px:g} px"
  # The nearest the box centre may come to an edge: half the box, less what may stick out.
  inset = (0.5 - EDGE_TOLERANCE) * face.size
  if not (inset <= face.x <= width - inset and inset <= face.y <= height - inset):
    return "face leaves the frame"
  if any(
    other.size >= SECOND_FACE_RATIO * face.size and other.score >= SECOND_FACE_MIN_SCORE
    for other in others
  ):
    return "a second face in the frame"
  return None


def track_faces(
  frames: Iterable[tuple[np.ndarray, bool]], detect_every: int, min_face_px: float
) -> Iterator[TrackedFrame]:
  """The speaker's face in every frame of a video, given as (frame, starts a new scene) pairs.

  Keyframes (a scene's first and last frame, and every `detect_every`-th in between) are
  detected; a frame between two keyframes is usable only if both are, and gets the face box
  interpolated between theirs. Frames are held back until the next keyframe: at most
  `detect_every` of them.
  """
  keyframe = None  # (frame, face, problem) of the last keyframe of the current scene
  held: list[np.ndarray] = []  # frames after it
  for frame, starts_scene in frames:
    if starts_scene and keyframe is not None:
      if held:
        yield from _between(keyframe, held[:-1], _keyframe(held[-1], keyframe[1], min_face_px))
      keyframe, held = None, []
    if keyframe is None:
      keyframe = _keyframe(frame, None, min_face_px)
      yield TrackedFrame(*keyframe)
      continue
    held.append(frame)
    if len(held) == detect_every:
      next_keyframe = _keyframe(frame, keyframe[1], min_face_px)
      yield from _between(keyframe, held[:-1], next_keyframe)
      keyframe, held = next_keyframe, []
  if held:
    yield from _between(keyframe, held[:-1], _keyframe(held[-1], keyframe[1], min_face_px))


def _keyframe(frame: np.ndarray, previous: Face | None, min_face_px: float):
  """(frame, the speaker's face, the frame's problem) for a frame that is detected on.

  The speaker is the face nearest the previous keyframe's, where one was near it, else the
  largest.
  """
  faces = detect_faces(frame, min_face_px)
  if not faces:
    return frame, None, frame_problem(None, [], *frame.shape[:2], min_face_px)
  speaker = faces[0]
  if previous is not None:
    nearest = min(faces, key=lambda face: _distance(face, previous))
    if _distance(nearest, previous) < previous.size:
      speaker = nearest
  others = [face for face in faces if face is not speaker]
  return frame, speaker, frame_problem(speaker, others, *frame.shape[:2], min_face_px)


def _distance(a: Face, b: Face) -> float:
  return math.hypot(a.x - b.x, a.y - b.y)


def _between(start, frames: list[np.ndarray], end) -> Iterator[TrackedFrame]:
  """The frames strictly between keyframes `start` and `end` (both given as `_keyframe` tuples), then `end`."""
  _, start_face, start_problem = start
  _, end_face, end_problem = end
  problem = start_problem or end_problem
  if problem is None and _distance(start_face, end_face) > 0.5 * start_face.size:
    # Too far for one head in a fraction of a second: a different face, or a cut not seen.
    problem = "face moved too fast to follow"
  for offset, frame in enumerate(frames, 1):
    fraction = offset / (len(frames) + 1)
    face = None if problem else start_face.lerp(end_face, fraction)
    yield TrackedFrame(frame, face, problem)
  yield TrackedFrame(*end)
