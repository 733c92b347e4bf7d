"""Test videos of real faces in known motion, made from photographs that ship with scikit-image.

The astronaut photo (Eileen Collins) is warped onto a canvas by a similarity transform per frame,
so where her eyes are in every frame is known exactly; a face from the LFW subset (another
person, grayscale, 25 px) plays the second face and the other side of a cut.
"""

import math

import cv2
import numpy as np
from skimage import data

from jaxtalk.timebase import SAMPLE_RATE

# The astronaut's iris centres in the 512 px photo, measured by eye on an enlarged crop: (the
# eye on the image's left, the one on its right). OpenCV's eye cascade finds boxes centred within
# a pixel of them.
ASTRONAUT_EYES = np.array([[201.5, 100.5], [246.5, 102.5]])
# The face centre in the photo, which the motions below rotate and scale about.
ASTRONAUT_FACE = np.array([222.0, 127.0])
BACKGROUND = (90, 90, 90)


def astronaut_pose(scale: float, roll: float, centre) -> np.ndarray:
  """The 2x3 map from photo pixels to canvas pixels: the face `scale` times its photo size (87 px
  across), its eye line rolled `roll` degrees clockwise, its centre at `centre`."""
  # cv2 rotates counter-clockwise for positive angles; a clockwise roll is the negative.
  pose = cv2.getRotationMatrix2D(tuple(ASTRONAUT_FACE), -roll, scale)
  pose[:, 2] += np.asarray(centre, float) - ASTRONAUT_FACE
  return pose


def place_astronaut(canvas: np.ndarray, pose: np.ndarray) -> np.ndarray:
  """The canvas with the photo warped onto it by `pose`; outside the photo keeps the canvas."""
  height, width = canvas.shape[:2]
  photo = data.astronaut()
  warped = cv2.warpAffine(photo, pose, (width, height), flags=cv2.INTER_AREA)
  inside = cv2.warpAffine(np.ones(photo.shape[:2], np.uint8), pose, (width, height)) > 0
  return np.where(inside[..., None], warped, canvas)


def eyes_at(pose: np.ndarray) -> np.ndarray:
  """Where the astronaut's eyes are on the canvas under `pose`: [[x, y], [x, y]]."""
  return np.c_[ASTRONAUT_EYES, np.ones(2)] @ pose.T


def lfw_face(side: int) -> np.ndarray:
  """A different person's face (the first of scikit-image's LFW faces) as RGB, `side` px square."""
  face = (data.lfw_subset()[0] * 255).astype(np.uint8)
  face = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
  return np.repeat(face[..., None], 3, axis=-1)


def canvas(height: int, width: int, count: int) -> np.ndarray:
  return np.tile(np.array(BACKGROUND, np.uint8), (count, height, width, 1))


def speech_like(seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """A gliding, syllable-rate modulated tone: enough of a signal to follow through resampling."""
  t = np.arange(round(seconds * sample_rate)) / sample_rate
  return (
    0.3 * np.sin(2 * np.pi * (150 + 300 * t) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
  ).astype(np.float32)


def roll_of(eyes: np.ndarray) -> float:
  """The eye line's roll, degrees clockwise in image coordinates."""
  (x0, y0), (x1, y1) = eyes
  return math.degrees(math.atan2(y1 - y0, x1 - x0))
