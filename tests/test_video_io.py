"""Tests for writing (H.264 + AAC), reading and probing videos through the bundled ffmpeg."""

import os

import numpy as np
import pytest
import soundfile

from jaxtalk.errors import UserError
from jaxtalk.media import audio_io, video_io
from jaxtalk.timebase import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME


def bar_column(t, width):
  """Left edge of frame t's bar: even, so the bar covers whole 2x2 chroma blocks of yuv420p."""
  return (4 * t) % (width - 5) // 2 * 2


def moving_frames(num_frames, height, width):
  """A 4 px green bar sweeping across a colour ramp, so frames differ and their order shows."""
  frames = np.zeros((num_frames, height, width, 3), np.uint8)
  frames[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)
  frames[..., 2] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
  for t in range(num_frames):
    frames[t, :, bar_column(t, width) : bar_column(t, width) + 4, 1] = 255
  return frames


def chirp(num_samples):
  t = np.arange(num_samples) / SAMPLE_RATE
  return (0.4 * np.sin(2 * np.pi * (200 + 400 * t) * t)).astype(np.float32)


def test_round_trip_with_audio_and_odd_size(tmp_path):
  frames, audio = moving_frames(50, 33, 47), chirp(50 * SAMPLES_PER_FRAME)
  path = str(tmp_path / "talk.mp4")
  video_io.write_video(path, frames, audio)
  assert os.listdir(tmp_path) == ["talk.mp4"]

  info = video_io.probe_video(path)
  assert (info.fps, info.width, info.height, info.num_frames, info.has_audio) == (
    FPS,
    48,
    34,
    50,
    True,
  )
  assert info.duration == pytest.approx(2.0, abs=0.05)

  read = np.stack(list(video_io.iter_frames(path)))
  assert read.shape == (50, 34, 48, 3)
  assert np.abs(read[:, :33, :47].astype(int) - frames).mean() < 4  # H.264 at high quality
  bars = read[:, :, :, 1].mean(axis=1).argmax(axis=1)
  # In order, none lost
  assert all(bar_column(t, 47) <= bars[t] < bar_column(t, 47) + 4 for t in range(50))
  assert np.abs(read[:, 33].astype(int) - read[:, 32]).mean() < 3  # padding repeats the edge row

  decoded = audio_io.load_audio(path)
  assert abs(decoded.size - audio.size) <= 0.01 * audio.size
  length = min(decoded.size, audio.size)
  assert np.corrcoef(decoded[:length], audio[:length])[0, 1] > 0.99


def test_video_without_audio_and_from_a_generator(tmp_path):
  path = str(tmp_path / "mute.mkv")
  video_io.write_video(path, (frame for frame in moving_frames(10, 16, 16)))
  info = video_io.probe_video(path)
  assert (info.num_frames, info.fps, info.has_audio) == (10, FPS, False)


def test_resampled_and_partial_reads(tmp_path):
  path = str(tmp_path / "two_seconds.mp4")
  video_io.write_video(path, moving_frames(50, 16, 24))
  frames = np.stack(list(video_io.iter_frames(path, fps=10)))
  assert frames.shape == (20, 16, 24, 3)
  middle = list(video_io.iter_frames(path, fps=10, start_seconds=1.0, max_seconds=0.4))
  assert len(middle) == 4


def test_write_rejects_bad_input_and_leaves_nothing(tmp_path):
  with pytest.raises(UserError, match="extension"):
    video_io.write_video(str(tmp_path / "out.gif"), moving_frames(2, 8, 8))
  with pytest.raises(ValueError, match="at least one frame"):
    video_io.write_video(str(tmp_path / "out.mp4"), [])
  with pytest.raises(ValueError, match="uint8"):
    video_io.write_video(str(tmp_path / "out.mp4"), np.zeros((2, 8, 8, 3), np.float32))

  def frames_then_a_different_size():
    yield from moving_frames(5, 16, 16)
    yield np.zeros((8, 8, 3), np.uint8)

  with pytest.raises(ValueError, match="same shape"):
    video_io.write_video(str(tmp_path / "out.mp4"), frames_then_a_different_size())
  assert os.listdir(tmp_path) == []


def test_interrupted_write_leaves_nothing(tmp_path):
  def frames_then_interrupt():
    yield from moving_frames(5, 16, 16)
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    video_io.write_video(str(tmp_path / "out.mp4"), frames_then_interrupt(), chirp(3200))
  assert os.listdir(tmp_path) == []


def test_unreadable_videos(tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    video_io.probe_video(str(tmp_path / "nope.mp4"))
  (tmp_path / "corrupt.mp4").write_bytes(b"not a video" * 100)
  with pytest.raises(UserError, match="cannot read video") as error:
    video_io.iter_frames(str(tmp_path / "corrupt.mp4"))
  assert "\n" not in str(error.value)
  sound_only = str(tmp_path / "sound.wav")
  soundfile.write(sound_only, chirp(1600), SAMPLE_RATE)
  with pytest.raises(UserError, match="no video stream"):
    video_io.probe_video(sound_only)
