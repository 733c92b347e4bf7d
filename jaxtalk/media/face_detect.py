"""Offline face detection, and the square crop that frames a face the same way everywhere.

The detector is scikit-image's LBP frontal-face cascade: it ships inside scikit-image, so nothing is
downloaded, and it is fast enough to run on a few frames per video. It finds upright, roughly
frontal faces, which is what portraits and talking-head videos show.

Portraits (`image_io.load_portrait`) are framed by `face_crop_box`. Real training videos are framed
by their eyes instead (`jaxtalk.media.face_align`, dlib's detector and OpenCV's eye cascade, which
also find small and tilted faces), at the eye positions this crop gives an upright frontal face,
so a model sees faces at the same scale and position in training and at inference.
"""

import functools
from typing import NamedTuple

import numpy as np
from PIL import Image
from skimage import data, feature

# The cascade scans a grayscale copy whose shorter side is at most this many pixels: a few tenths of
# a second a frame. Its window is 24 px, so faces narrower than 1/8 of the image's shorter side are
# missed; portraits and talking-head videos show larger faces than that.
DETECTION_SIDE = 192
_MIN_FACE_PX = 24
# The crop is this many times the detected box, which spans brows to mouth: this takes in the hair,
# chin and a little neck, as talking-head crops do.
FACE_CROP_SCALE = 1.6


class Box(NamedTuple):
  """An axis-aligned box in pixels: left, top, width, height."""

  x: int
  y: int
  width: int
  height: int


@functools.cache
def _cascade() -> feature.Cascade:
  return feature.Cascade(data.lbp_frontal_face_cascade_filename())


def detect_face(image: np.ndarray) -> Box | None:
  """The largest face in a uint8 RGB image [H, W, 3], as a Box in its pixels; None if there is none."""
  height, width = image.shape[:2]
  scale = min(1.0, DETECTION_SIDE / min(height, width))
  gray = Image.fromarray(image).convert("L")
  if scale < 1.0:
    gray = gray.resize(
      (max(1, round(width * scale)), max(1, round(height * scale))),
      Image.Resampling.BILINEAR,
      reducing_gap=2.0,
    )
  gray = np.asarray(gray, dtype=np.float32) / 255.0
  if min(gray.shape) < _MIN_FACE_PX:
    return None
  detections = _cascade().detect_multi_scale(
    img=gray,
    scale_factor=1.2,
    step_ratio=1,
    min_size=(_MIN_FACE_PX, _MIN_FACE_PX),
    max_size=gray.shape,
  )
  if not detections:
    return None
  best = max(detections, key=lambda d: d["width"] * d["height"])
  return Box(
    x=round(best["c"] / scale),
    y=round(best["r"] / scale),
    width=round(best["width"] / scale),
    height=round(best["height"] / scale),
  )


def face_crop_box(
  face: Box, image_height: int, image_width: int, scale: float = FACE_CROP_SCALE
) -> Box:
  """The square around a face, `scale` times its size, kept inside the image where it fits.

  The square is shifted (not shrunk) to stay inside the image; only when it is larger than the
  image along a side (a face filling the frame) does it stick out, centred, and `crop_square`
  fills that part with edge pixels.
  """
  side = round(scale * max(face.width, face.height))
  side = min(side, max(image_height, image_width))
  centre_x, centre_y = face.x + face.width / 2, face.y + face.height / 2
  return Box(
    x=_place(centre_x, side, image_width),
    y=_place(centre_y, side, image_height),
    width=side,
    height=side,
  )


def _place(centre: float, side: int, extent: int) -> int:
  """Start of a span of length `side` centred on `centre`, moved inside [0, extent) if it fits there."""
  if side >= extent:
    return (extent - side) // 2
  return int(np.clip(round(centre - side / 2), 0, extent - side))


def centre_crop_box(image_height: int, image_width: int) -> Box:
  """The largest centred square: the framing used when no face is found."""
  side = min(image_height, image_width)
  return Box(x=(image_width - side) // 2, y=(image_height - side) // 2, width=side, height=side)


def crop_square(image: np.ndarray, box: Box) -> np.ndarray:
  """The pixels of `box` from an [H, W, C] image; parts outside the image repeat its edge pixels."""
  height, width = image.shape[:2]
  inside = image[
    max(box.y, 0) : min(box.y + box.height, height), max(box.x, 0) : min(box.x + box.width, width)
  ]
  padding = (
    (max(-box.y, 0), max(box.y + box.height - height, 0)),
    (max(-box.x, 0), max(box.x + box.width - width, 0)),
    (0, 0),
  )
  if any(before or after for before, after in padding):
    inside = np.pad(inside, padding, mode="edge")
  return inside
