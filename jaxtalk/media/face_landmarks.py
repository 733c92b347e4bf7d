"""Eye centres inside a detected face: the landmarks that real-video clips are aligned by.

No pretrained landmark model can be fetched here (dlib's shape predictors are separate downloads),
so the eyes come from OpenCV's Haar eye cascade (`haarcascade_eye.xml`, by Shameem Hameed), which
ships inside the opencv-python wheel. The cascade file states its terms in its header: the Intel
License Agreement for Open Source Computer Vision Library (Copyright (C) 2000, Intel Corporation),
a BSD-style licence that allows redistribution and use, in source and binary forms, with or
without modification, as long as the copyright notice and conditions are kept and Intel's name is
not used to endorse derived products; the software comes with no warranty.

The cascade only finds upright eyes, so the face is first cut out as an upright square patch (the
detector's roll estimate undone); a pair of eyes is the two detections on either side of the
patch's middle, level and of similar size, closest to where eyes sit in a dlib face box.
"""

import functools

import cv2
import numpy as np

from jaxtalk.media.face_track import Face

# The patch covers this many face-box sides, so eyes stay inside when the box is a little off.
_PATCH_SPAN = 1.4
_PATCH_PX = 112
# Where eyes sit in a dlib face box, as fractions of its side from its top-left corner: the
# astronaut photograph's iris centres in dlib's box on it (88 px, its top edge at the brows).
EYES_IN_BOX = np.array([[0.261, 0.205], [0.773, 0.227]])
# Eye detections are this large, as fractions of the patch side.
_EYE_SIZE_RANGE = (0.11, 0.35)


@functools.cache
def _eye_cascade() -> cv2.CascadeClassifier:
  return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")


def _patch_transform(face: Face) -> np.ndarray:
  """The 2x3 affine map from frame pixels to the upright face patch's pixels."""
  scale = _PATCH_PX / (_PATCH_SPAN * face.size)
  # cv2 angles are counter-clockwise; undoing a clockwise roll of `roll` degrees is `roll` of it.
  transform = cv2.getRotationMatrix2D((face.x, face.y), face.roll, scale)
  transform[:, 2] += _PATCH_PX / 2 - np.array([face.x, face.y])
  return transform


def find_eyes(gray: np.ndarray, face: Face) -> np.ndarray | None:
  """The two eye centres [[x, y] on the image's left, [x, y] on its right] in frame pixels.

  `gray` is the frame as uint8 grayscale. None when the cascade finds no plausible pair.
  """
  to_patch = _patch_transform(face)
  patch = cv2.warpAffine(gray, to_patch, (_PATCH_PX, _PATCH_PX), flags=cv2.INTER_LINEAR)
  # Only the upper part of the face holds eyes; searching less is faster and finds fewer brows.
  upper = round(0.6 * _PATCH_PX)
  smallest, largest = (round(fraction * _PATCH_PX) for fraction in _EYE_SIZE_RANGE)
  found = _eye_cascade().detectMultiScale(
    patch[:upper],
    scaleFactor=1.2,
    minNeighbors=3,
    minSize=(smallest, smallest),
    maxSize=(largest, largest),
  )
  # OpenCV's threads hand back the detections in whatever order they finish; sorted, ties between
  # equally good pairs fall the same way on every machine (ingest promises byte-equal shards).
  pair = _best_pair(sorted((x + w / 2, y + h / 2, w) for x, y, w, h in found))
  if pair is None:
    return None
  back = cv2.invertAffineTransform(to_patch)
  return np.array([back @ np.array([x, y, 1.0]) for x, y in pair])


def _expected_in_patch() -> np.ndarray:
  """Where EYES_IN_BOX falls in the patch, in patch pixels."""
  return ((EYES_IN_BOX - 0.5) / _PATCH_SPAN + 0.5) * _PATCH_PX


def _best_pair(candidates: list[tuple[float, float, float]]) -> list[tuple[float, float]] | None:
  """The most plausible (left, right) eye pair among (x, y, width) detections, or None."""
  expected = _expected_in_patch()
  middle = _PATCH_PX / 2
  best, best_error = None, np.inf
  for left in (c for c in candidates if c[0] < middle):
    for right in (c for c in candidates if c[0] > middle):
      level = abs(left[1] - right[1]) < 0.12 * _PATCH_PX
      similar = max(left[2], right[2]) < 1.6 * min(left[2], right[2])
      apart = 0.2 * _PATCH_PX < right[0] - left[0] < 0.6 * _PATCH_PX
      if not (level and similar and apart):
        continue
      error = np.abs(np.array([left[:2], right[:2]]) - expected).sum()
      if error < best_error:
        best, best_error = [left[:2], right[:2]], error
  return best
