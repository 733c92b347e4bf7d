"""Tests for the eye landmarks and the eye-aligned crops made from them."""

import math

import numpy as np
import pytest
from face_videos import ASTRONAUT_EYES, astronaut_pose, canvas, eyes_at, place_astronaut
from skimage import data

from jaxtalk.media import face_align, face_landmarks
from jaxtalk.media.face_track import Face


def astronaut_face(pose, roll_hint):
  """The astronaut's face box under `pose`, as dlib would report it, with a rough roll."""
  centre = np.array([222.5, 126.5, 1.0]) @ pose.T
  scale = math.hypot(*pose[0, :2])
  return Face(x=centre[0], y=centre[1], size=88 * scale, roll=roll_hint, score=1.0)


@pytest.mark.parametrize(("roll", "hint"), [(0.0, 0.0), (20.0, 30.0), (-25.0, -30.0), (8.0, 0.0)])
def test_finds_the_eyes_when_the_roll_is_only_roughly_known(roll, hint):
  pose = astronaut_pose(0.7, roll, (112.0, 88.0))
  frame = place_astronaut(canvas(176, 224, 1)[0], pose)
  gray = frame.mean(axis=-1).astype(np.uint8)
  eyes = face_landmarks.find_eyes(gray, astronaut_face(pose, hint))
  assert eyes is not None
  assert np.abs(eyes - eyes_at(pose)).max() < 2.0  # the eyes are 32 px apart


def test_no_eyes_where_there_are_none():
  blank = np.full((176, 224), 128, np.uint8)
  assert face_landmarks.find_eyes(blank, Face(x=112, y=88, size=70, roll=0, score=1)) is None


def test_the_crop_transform_puts_the_eyes_at_the_canonical_positions():
  rng = np.random.default_rng(0)
  for _ in range(5):
    left = rng.uniform(50, 150, 2)
    right = left + rng.uniform(20, 60) * np.array([math.cos(a := rng.uniform(-1, 1)), math.sin(a)])
    eyes = np.array([left, right])
    transform = face_align.crop_transform(face_align.eye_parameters(eyes), 128)
    np.testing.assert_allclose(
      np.c_[eyes, np.ones(2)] @ transform.T, face_align.CANONICAL_EYES * 128, atol=1e-9
    )


def test_the_crop_shows_what_the_transform_says():
  """A dot in the frame lands where the transform maps it, shrunk (through the finer warp) or not."""
  for distance in (20.0, 120.0):  # eye distances: the crop enlarges the first, shrinks the second
    parameters = np.array([200.0, 150.0, distance, 0.3])
    transform = face_align.crop_transform(parameters, 64)
    frame = np.zeros((300, 400, 3), np.uint8)
    dot = np.array([205, 160])
    frame[dot[1] - 2 : dot[1] + 3, dot[0] - 2 : dot[0] + 3] = 255
    crop = face_align.aligned_crop(frame, parameters, 64).astype(float)[..., 0]
    ys, xs = np.mgrid[:64, :64]
    centroid = np.array([(xs * crop).sum(), (ys * crop).sum()]) / crop.sum()
    np.testing.assert_allclose(centroid, transform @ [*dot, 1.0], atol=0.3)


def eye_track(frames, noise, rng):
  """Eyes moving right and rolling steadily, measured with `noise` px of error per eye."""
  truth = []
  for t in range(frames):
    middle, roll = np.array([100 + 1.5 * t, 80 + 0.5 * t]), math.radians(10 * math.sin(t / 15))
    half = 20 * np.array([math.cos(roll), math.sin(roll)])
    truth.append(np.array([middle - half, middle + half]))
  return truth, [eyes + rng.normal(0, noise, (2, 2)) for eyes in truth]


def boxes_for(eyes_list):
  """Face boxes as a detector would give them: placed around the eyes, but off by a few px."""
  rng = np.random.default_rng(1)
  faces = []
  for eyes in eyes_list:
    x, y = eyes.mean(axis=0) + [0, 25] + rng.normal(0, 3, 2)
    faces.append(Face(x=x, y=y, size=80 + rng.normal(0, 3), roll=0.0, score=1.0))
  return faces


def parameter_errors(smoothed, truth):
  true = np.array([face_align.eye_parameters(eyes) for eyes in truth])
  return np.abs(smoothed - true)


def test_smoothing_removes_jitter_without_lagging_behind_the_motion():
  rng = np.random.default_rng(0)
  truth, measured = eye_track(60, 1.0, rng)
  faces = boxes_for(truth)
  exact = face_align.track_parameters(faces, truth)
  assert parameter_errors(exact, truth)[:, :3].max() < 0.05  # no lag, no bias
  raw = np.array([face_align.eye_parameters(eyes) for eyes in measured])
  smoothed = face_align.track_parameters(faces, measured)
  raw_error, smoothed_error = (parameter_errors(p, truth).mean(axis=0) for p in (raw, smoothed))
  assert np.all(smoothed_error < 0.6 * raw_error)


def test_frames_without_eyes_and_wrong_pairs_follow_the_face_box():
  truth, _ = eye_track(40, 0.0, np.random.default_rng(0))
  faces = boxes_for(truth)
  measured = list(truth)
  for t in (5, 6, 7, 20):
    measured[t] = None
  measured[30] = truth[30] + [0, 18]  # a nostril pair, 18 px below the eyes
  errors = parameter_errors(face_align.track_parameters(faces, measured), truth)
  # Within the boxes' own few px of error, smoothed.
  assert errors[:, :2].max() < 2.5 and errors[:, 2].max() < 2.5


def test_without_any_eyes_the_box_alone_aligns_the_face():
  pose = astronaut_pose(1.0, 0.0, (222.0, 127.0))
  face = Face(x=222.5, y=126.5, size=88, roll=0.0, score=1.0)  # dlib's box on the photo
  (parameters,) = face_align.track_parameters([face], [None])
  np.testing.assert_allclose(parameters, face_align.eye_parameters(eyes_at(pose)), atol=0.1)


def test_aligning_the_photo_itself():
  """The astronaut's aligned crop has her eyes at the canonical places: the test videos' reference."""
  crop = face_align.aligned_crop(data.astronaut(), face_align.eye_parameters(ASTRONAUT_EYES), 64)
  assert crop.shape == (64, 64, 3)
  for x, y in face_align.CANONICAL_EYES * 64:
    # An iris is darker than the skin around it.
    assert crop[round(y), round(x)].mean() < 0.7 * crop[round(y) + 5, round(x)].mean()


def test_a_still_crop_keeps_a_face_until_its_box_sticks_out_past_the_margin():
  still = np.array([100.0, 80.0, 30.0, 0.0])
  # The face box is 0.62 crop sides across, its centre 0.49 crop sides from the left edge: moved
  # this far left (crop sides; the crop is 30 / 0.32 frame px across), it sticks out by the margin.
  box = 0.32 / 0.512
  to_edge = 0.4894 - (0.5 - face_align.STILL_CROP_MARGIN) * box
  for shift, inside in ((to_edge - 0.01, True), (to_edge + 0.01, False)):
    moved = still - [shift * 30 / 0.32, 0, 0, 0]
    assert face_align.stays_in_crop(np.stack([still, moved]), still) == inside
  # A face that grows past the crop leaves it even with its centre still.
  grown = still * [1, 1, 1.6, 1]
  assert not face_align.stays_in_crop(grown[None], still)
  assert face_align.stays_in_crop(still[None], face_align.still_parameters(still[None]))


def test_eyes_of_inverts_eye_parameters():
  eyes = np.random.default_rng(0).uniform(50, 150, (9, 2, 2))
  parameters = np.array([face_align.eye_parameters(pair) for pair in eyes])
  np.testing.assert_allclose(face_align.eyes_of(parameters), eyes, atol=1e-9)


def test_the_eye_pair_does_not_depend_on_the_order_of_the_detections(monkeypatch):
  # Two right eyes equally far from where eyes are expected: a tie that the order the detector's
  # threads hand them back in must not break.
  (lx, ly), (rx, ry) = face_landmarks._expected_in_patch()
  left, right_low, right_high = (
    [x - 10, y - 10, 20, 20] for x, y in ((lx, ly), (rx, ry + 2), (rx, ry - 2))
  )
  face = Face(x=112, y=88, size=70, roll=0, score=1)
  gray = np.zeros((176, 224), np.uint8)
  found = []
  for order in ([left, right_low, right_high], [right_high, left, right_low]):
    detector = type(
      "Cascade", (), {"detectMultiScale": lambda self, *a, order=order, **k: np.array(order)}
    )
    monkeypatch.setattr(face_landmarks, "_eye_cascade", detector)
    found.append(face_landmarks.find_eyes(gray, face))
  np.testing.assert_array_equal(found[0], found[1])
