"""Tests for audio loading (soundfile and ffmpeg paths), its user errors, and atomic WAV writes."""

import os
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile
from scipy import signal

from jaxtalk.errors import UserError
from jaxtalk.media import audio_io
from jaxtalk.timebase import SAMPLE_RATE, SAMPLES_PER_FRAME, frames_of


def tone(seconds, sample_rate, freq=440.0, amplitude=0.5):
  t = np.arange(round(seconds * sample_rate)) / sample_rate
  return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def ffmpeg(*args):
  subprocess.run(
    [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *args], check=True
  )


@pytest.fixture
def stereo_wav(tmp_path):
  """1 s of stereo at 44.1 kHz with different levels left and right."""
  left, right = tone(1.0, 44100, amplitude=0.6), tone(1.0, 44100, amplitude=0.2)
  path = str(tmp_path / "stereo.wav")
  soundfile.write(path, np.stack([left, right], axis=1), 44100, subtype="FLOAT")
  return path, (left + right) / 2


def test_stereo_wav_is_mixed_to_mono_and_resampled_exactly(stereo_wav):
  path, mono = stereo_wav
  audio = audio_io.load_audio(path)
  assert audio.dtype == np.float32 and audio.shape == (SAMPLE_RATE,)
  np.testing.assert_allclose(audio, signal.resample_poly(mono, 160, 441), atol=1e-6)


def test_flac_at_the_target_rate_is_unchanged(tmp_path):
  original = tone(0.5, SAMPLE_RATE)
  path = str(tmp_path / "mono.flac")
  soundfile.write(path, original, SAMPLE_RATE, subtype="PCM_24")
  np.testing.assert_allclose(audio_io.load_audio(path), original, atol=1e-6)


def test_ffmpeg_path_mixes_like_the_soundfile_path(stereo_wav, tmp_path):
  # The same lossless stereo samples in a container soundfile does not read: same level, same samples.
  path, _ = stereo_wav
  matroska = str(tmp_path / "stereo.mka")
  ffmpeg("-i", path, "-c:a", "pcm_f32le", matroska)
  np.testing.assert_allclose(audio_io.load_audio(matroska), audio_io.load_audio(path), atol=1e-6)


@pytest.mark.parametrize("suffix", [".m4a", ".mp3"])
def test_compressed_audio_decodes_through_ffmpeg(stereo_wav, tmp_path, suffix):
  path, mono = stereo_wav
  compressed = str(tmp_path / f"speech{suffix}")
  ffmpeg("-i", path, "-b:a", "128k", compressed)
  audio = audio_io.load_audio(compressed)
  expected = signal.resample_poly(mono, 160, 441)
  assert abs(audio.size - expected.size) < 0.05 * expected.size  # codecs pad to whole packets
  length = min(audio.size, expected.size)
  assert np.corrcoef(audio[:length], expected[:length])[0, 1] > 0.95


def test_max_seconds_reads_only_the_start(tmp_path):
  path = str(tmp_path / "long.wav")
  soundfile.write(path, tone(3.0, 22050), 22050)
  assert audio_io.load_audio(path, max_seconds=1.0).shape == (SAMPLE_RATE,)
  matroska = str(tmp_path / "long.mka")
  ffmpeg("-i", path, "-c:a", "pcm_s16le", matroska)
  assert audio_io.load_audio(matroska, max_seconds=1.0).shape == (SAMPLE_RATE,)


def test_audio_is_clipped_to_unit_range(tmp_path):
  path = str(tmp_path / "hot.wav")
  soundfile.write(path, tone(0.5, SAMPLE_RATE, amplitude=1.5), SAMPLE_RATE, subtype="FLOAT")
  audio = audio_io.load_audio(path)
  assert audio.max() == 1.0 and audio.min() == -1.0


def test_missing_and_unreadable_files(tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    audio_io.load_audio(str(tmp_path / "nope.wav"))
  with pytest.raises(UserError, match="is not a file"):
    audio_io.load_audio(str(tmp_path))
  for name in ("corrupt.wav", "corrupt.mp3"):
    (tmp_path / name).write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(UserError, match="cannot decode audio") as error:
      audio_io.load_audio(str(tmp_path / name))
    assert "\n" not in str(error.value)


def test_video_without_audio_stream(tmp_path):
  path = str(tmp_path / "silent_film.mp4")
  ffmpeg(
    "-f",
    "lavfi",
    "-i",
    "testsrc=size=32x32:rate=25",
    "-t",
    "0.4",
    "-c:v",
    "libx264",
    "-pix_fmt",
    "yuv420p",
    path,
  )
  with pytest.raises(UserError, match="no audio stream"):
    audio_io.load_audio(path)


def test_empty_short_and_silent_audio(tmp_path):
  cases = {
    "empty.wav": (np.zeros(0, np.float32), "no audio samples"),
    "short.wav": (tone(600 / SAMPLE_RATE, SAMPLE_RATE), "shorter than one video frame"),
    "silent.wav": (np.zeros(SAMPLE_RATE, np.float32), "silent"),
    "hiss.wav": (tone(1.0, SAMPLE_RATE, amplitude=5e-5), "silent"),
  }
  for name, (samples, message) in cases.items():
    path = str(tmp_path / name)
    soundfile.write(path, samples, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(UserError, match=message):
      audio_io.load_audio(path)
  one_frame = str(tmp_path / "one_frame.wav")
  soundfile.write(one_frame, tone(SAMPLES_PER_FRAME / SAMPLE_RATE, SAMPLE_RATE), SAMPLE_RATE)
  assert audio_io.load_audio(one_frame).shape == (SAMPLES_PER_FRAME,)


def test_frame_arithmetic():
  assert SAMPLES_PER_FRAME == 640
  assert frames_of(32000) == 50
  assert frames_of(32639) == 50
  assert frames_of(639) == 0


def test_save_wav_round_trips_and_creates_the_folder(tmp_path):
  # A float WAV keeps even out-of-range samples exactly.
  audio = tone(0.25, SAMPLE_RATE) * np.float32(1.7)
  path = str(tmp_path / "new" / "out.wav")
  audio_io.save_wav(path, audio)
  read, rate = soundfile.read(path, dtype="float32")
  assert rate == SAMPLE_RATE
  np.testing.assert_array_equal(read, audio)
  assert os.listdir(tmp_path / "new") == ["out.wav"]


def test_interrupted_save_leaves_nothing(tmp_path, monkeypatch):
  def write_then_fail(path, *args, **kwargs):
    with open(path, "wb") as f:
      f.write(b"RIFF half a header")
    raise KeyboardInterrupt

  monkeypatch.setattr(audio_io.soundfile, "write", write_then_fail)
  with pytest.raises(KeyboardInterrupt):
    audio_io.save_wav(str(tmp_path / "out.wav"), tone(0.1, SAMPLE_RATE))
  assert os.listdir(tmp_path) == []
