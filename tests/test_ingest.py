"""Tests for the real-video preprocessor, on tiny videos made here."""

import os
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile
from PIL import Image
from scipy import signal
from skimage import data

from jaxtalk.data import clips, ingest

SOURCE_FPS, SECONDS, CANVAS = 30, 2.0, (240, 320)
PORTRAIT_PX = 200  # the astronaut photo is scaled to this size on the canvas
# Face centre (x, y) in the scaled photo
FACE_IN_PHOTO = np.array([220.0, 120.0]) * PORTRAIT_PX / 512


def photo_offset(t):
  """Top-left (x, y) of the photo on the canvas at frame t: a slow drift to the right."""
  return 40 + t // 3, 20


def astronaut_frames():
  photo = np.asarray(Image.fromarray(data.astronaut()).resize((PORTRAIT_PX, PORTRAIT_PX)))
  frames = np.full((round(SECONDS * SOURCE_FPS), *CANVAS, 3), 90, np.uint8)
  for t, frame in enumerate(frames):
    x, y = photo_offset(t)
    frame[y : y + PORTRAIT_PX, x : x + PORTRAIT_PX] = photo
  return frames


def write_camera_video(path, frames):
  """Writes frames as H.264 at SOURCE_FPS: a camera's rate, which jaxtalk's own writer never uses."""
  writer = imageio_ffmpeg.write_frames(
    path,
    (frames.shape[2], frames.shape[1]),
    fps=SOURCE_FPS,
    quality=None,
    macro_block_size=1,
    ffmpeg_log_level="error",
    output_params=["-crf", "18"],
  )
  writer.send(None)
  for frame in frames:
    writer.send(frame)
  writer.close()


def speech_like(sample_rate):
  t = np.arange(round(SECONDS * sample_rate)) / sample_rate
  return (
    0.3 * np.sin(2 * np.pi * (150 + 300 * t) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
  ).astype(np.float32)


def with_stereo_audio(video_path, out_path, tmp_path):
  """Muxes 44.1 kHz stereo audio into a video, as phones and cameras record it."""
  mono = speech_like(44100)
  wav = str(tmp_path / "stereo.wav")
  soundfile.write(wav, np.stack([mono, 0.5 * mono], axis=1), 44100)
  subprocess.run(
    [
      imageio_ffmpeg.get_ffmpeg_exe(),
      "-nostdin",
      "-v",
      "error",
      "-y",
      "-i",
      video_path,
      "-i",
      wav,
      "-c:v",
      "copy",
      "-c:a",
      "aac",
      out_path,
    ],
    check=True,
  )
  os.remove(video_path)
  return signal.resample_poly(0.75 * mono, 160, 441)


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
  folder = tmp_path_factory.mktemp("videos")
  scratch = tmp_path_factory.mktemp("scratch")
  frames = astronaut_frames()
  write_camera_video(str(scratch / "talk.mp4"), frames)
  expected_audio = with_stereo_audio(str(scratch / "talk.mp4"), str(folder / "talk.mp4"), scratch)
  write_camera_video(str(folder / "mute.mp4"), frames)
  noise = np.random.default_rng(0).integers(0, 256, (frames.shape[0], 120, 160, 3), dtype=np.uint8)
  write_camera_video(str(scratch / "noise.mp4"), noise)
  with_stereo_audio(str(scratch / "noise.mp4"), str(folder / "noise.mp4"), scratch)
  (folder / "notes.txt").write_text("not a video")
  return str(folder), expected_audio


@pytest.fixture(scope="module")
def ingested(video_folder, tmp_path_factory):
  logged = []
  summary = ingest.ingest_folder(
    video_folder[0],
    str(tmp_path_factory.mktemp("shards")),
    image_size=64,
    split="train",
    log=logged.append,
  )
  return summary, logged


def test_ingests_the_talking_video_and_skips_the_others(video_folder, ingested):
  _, expected_audio = video_folder
  summary, logged = ingested
  assert sorted(logged) == ["skip mute.mp4: no audio track", "skip noise.mp4: no face found"]
  assert summary.clips == 1 and summary.seconds == pytest.approx(2.0)
  assert [os.path.basename(p) for p in summary.shards] == ["train-00000.array_record"]

  (clip,) = clips.read_clips(summary.shards)
  assert clip.frames.shape == (50, 64, 64, 3) and clip.audio.shape == (32000,)
  assert clip.meta["source"] == "video:talk.mp4" and clip.meta["split"] == "train"
  # Stereo mixed, resampled, in sync
  assert np.corrcoef(clip.audio, expected_audio[:32000])[0, 1] > 0.95

  # One crop for the whole clip, centred on where the face is mid-clip, 1.6x the detected face.
  x, y, width, height = clip.meta["crop_box"]
  mid_face = np.add(photo_offset(round(SECONDS * SOURCE_FPS) // 2), FACE_IN_PHOTO)
  assert np.allclose((x + width / 2, y + height / 2), mid_face, atol=12)
  assert width == height and 50 < width < 130
  # The photo drifts right inside the still crop: the last frame is the first moved right by the
  # drift over the clip, 20 canvas px (photo_offset), about 20 px at this crop scale.
  first, last = clip.frames[[0, -1]].astype(float).mean(axis=(1, 3))
  errors = [np.abs(np.roll(first, shift)[30:60] - last[30:60]).mean() for shift in range(30)]
  assert 15 <= np.argmin(errors) <= 25


def test_long_videos_are_cut_into_aligned_clips(video_folder, ingested, tmp_path):
  only_talk = tmp_path / "videos"
  only_talk.mkdir()
  os.symlink(os.path.join(video_folder[0], "talk.mp4"), only_talk / "talk.mp4")
  halves = ingest.ingest_folder(
    str(only_talk), str(tmp_path / "halves"), image_size=64, max_seconds=1.0, log=lambda line: None
  )
  (whole,) = clips.read_clips(ingested[0].shards)
  first, second = clips.read_clips(halves.shards)
  assert [first.meta["clip_id"], second.meta["clip_id"]] == ["talk.mp4-000", "talk.mp4-001"]
  assert first.frames.shape[0] == second.frames.shape[0] == 25
  assert second.meta["start_seconds"] == 1.0
  np.testing.assert_array_equal(np.concatenate([first.audio, second.audio]), whole.audio)
  # Each clip has its own crop, following the face as it drifts right.
  assert first.meta["crop_box"][0] < whole.meta["crop_box"][0] < second.meta["crop_box"][0]


def test_command_line_errors(video_folder, tmp_path, capsys):
  assert ingest.main(["--videos", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
  assert "does not exist" in capsys.readouterr().err
  empty = tmp_path / "empty"
  empty.mkdir()
  assert ingest.main(["--videos", str(empty), "--out", str(tmp_path / "out")]) == 2
  assert "no .mp4" in capsys.readouterr().err
  folder, _ = video_folder
  taken = tmp_path / "taken"
  taken.mkdir()
  (taken / "train-00000.array_record").write_bytes(b"")
  assert ingest.main(["--videos", folder, "--out", str(taken)]) == 2
  assert "already holds train shards" in capsys.readouterr().err
