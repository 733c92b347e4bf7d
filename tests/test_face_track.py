"""Tests for finding and following the speaker's face through a video."""

import numpy as np
import pytest
from face_videos import astronaut_pose, canvas, eyes_at, place_astronaut, roll_of

from jaxtalk.media import face_track
from jaxtalk.media.face_track import Face


@pytest.mark.parametrize("roll", [-60.0, -25.0, 0.0, 25.0, 60.0])
def test_finds_rolled_faces_and_roughly_how_far_they_roll(roll):
  pose = astronaut_pose(0.8, roll, (112.0, 88.0))
  frame = place_astronaut(canvas(176, 224, 1)[0], pose)
  (face,) = face_track.detect_faces(frame, 40)
  eyes = eyes_at(pose)
  # Rolls of 60 degrees are beyond dlib's own sub-detectors: found on a rotated copy.
  assert abs(face.roll - roll_of(eyes)) <= 15
  assert 60 < face.size < 85  # the face is 70 px across
  assert np.hypot(face.x - 112, face.y - 88) < 0.2 * face.size


def test_frame_problems():
  speaker = Face(x=100, y=80, size=60, roll=0, score=1.0)
  assert face_track.frame_problem(speaker, [], 176, 224, 40) is None
  assert face_track.frame_problem(None, [], 176, 224, 40) == "no face found"
  small = Face(x=100, y=80, size=30, roll=0, score=1.0)
  assert face_track.frame_problem(small, [], 176, 224, 40) == "face smaller than 40 px"
  # A tenth of the box may stick out of the frame, more may not.
  inside, out = (Face(x=224 - 0.45 * 60 + dx, y=80, size=60, roll=0, score=1) for dx in (0, 4))
  assert face_track.frame_problem(inside, [], 176, 224, 40) is None
  assert face_track.frame_problem(out, [], 176, 224, 40) == "face leaves the frame"
  other = Face(x=180, y=80, size=40, roll=0, score=1.0)
  assert face_track.frame_problem(speaker, [other], 176, 224, 40) == "a second face in the frame"
  # A smaller face, or one dlib is unsure of (as its false detections are), does not count.
  background = Face(x=180, y=80, size=30, roll=0, score=1.0)
  unsure = Face(x=180, y=80, size=60, roll=-30, score=0.2)
  assert face_track.frame_problem(speaker, [background, unsure], 176, 224, 40) is None


def fake_detector(monkeypatch, faces_at):
  """Makes detection return `faces_at[frame id]`; a frame's id is its first pixel."""
  detected = []

  def detect(frame, min_face_px):
    detected.append(int(frame[0, 0, 0]))
    return faces_at(int(frame[0, 0, 0]))

  monkeypatch.setattr(face_track, "detect_faces", detect)
  return detected


def frames(count):
  video = np.zeros((count, 120, 160, 3), np.uint8)
  video[:, 0, 0, 0] = np.arange(count)
  return list(video)


def test_detects_on_keyframes_and_interpolates_between(monkeypatch):
  def faces_at(t):
    return [Face(x=50 + 2 * t, y=60, size=50, roll=t, score=1)]

  detected = fake_detector(monkeypatch, faces_at)
  video = frames(14)
  cut = 8
  tracked = list(face_track.track_faces(((f, t in (0, cut)) for t, f in enumerate(video)), 5, 40))
  # A scene's first and last frames are keyframes, and every fifth frame in between.
  assert detected == [0, 5, 7, 8, 13]
  assert [t.frame[0, 0, 0] for t in tracked] == list(range(14))
  assert all(t.problem is None for t in tracked)
  # Motion linear in time is followed exactly, on both sides of the cut.
  np.testing.assert_allclose([t.face.x for t in tracked], 50 + 2 * np.arange(14))
  np.testing.assert_allclose([t.face.roll for t in tracked], np.arange(14))


def test_frames_next_to_a_bad_keyframe_share_its_problem(monkeypatch):
  def faces_at(t):
    if t == 10:
      return []
    if t == 15:  # another face far away: not the speaker moving
      return [Face(x=140, y=60, size=50, roll=0, score=1)]
    return [Face(x=50, y=60, size=50, roll=0, score=1)]

  fake_detector(monkeypatch, faces_at)
  tracked = list(face_track.track_faces(((f, t == 0) for t, f in enumerate(frames(21))), 5, 40))
  problems = [t.problem for t in tracked]
  assert problems[:6] == [None] * 6
  assert set(problems[6:11]) == {"no face found"}
  assert set(problems[11:15]) == {"no face found"}
  assert problems[15] is None  # a face on its own, but...
  assert set(problems[16:20]) == {"face moved too fast to follow"}
  assert problems[20] is None
