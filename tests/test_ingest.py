"""Tests for the real-video preprocessor, on small videos of real photographs made here."""

import math
import os
import pathlib
import subprocess
import sys

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import soundfile
from face_videos import (
  astronaut_pose,
  canvas,
  eyes_at,
  lfw_face,
  place_astronaut,
  roll_of,
  speech_like,
)
from scipy import signal
from skimage import data

from jaxtalk.data import clips, ingest, ingest_spans, ingest_staging, ingest_video
from jaxtalk.media import face_align, video_io
from jaxtalk.timebase import FPS

# Faces in these videos are 50 px and up: a larger minimum than the default makes detection cheaper.
SETTINGS = ingest_video.IngestSettings(image_size=64, min_face_px=48.0)
HEIGHT, WIDTH = 176, 224
CAMERA_FPS, TALK_SECONDS = 30, 2.0
CUT_FRAME = 30  # the cut video switches person at this frame (1.2 s)
WALK_FRAMES = 75


def talk_pose(time):
  """The astronaut at `time` s into talk.mp4: drifting right, rolling to and fro, shrinking."""
  f = time / TALK_SECONDS
  return astronaut_pose(0.8 - 0.2 * f, 15 * math.sin(2 * math.pi * f), (90 + 40 * f, 80 + 10 * f))


def write_camera_video(path, frames):
  """Writes frames as H.264 at CAMERA_FPS: a camera's rate, which jaxtalk's own writer never uses."""
  writer = imageio_ffmpeg.write_frames(
    path,
    (frames.shape[2], frames.shape[1]),
    fps=CAMERA_FPS,
    quality=None,
    macro_block_size=1,
    ffmpeg_log_level="error",
    output_params=["-crf", "18"],
  )
  writer.send(None)
  for frame in frames:
    writer.send(frame)
  writer.close()


def with_stereo_audio(video_path, out_path, seconds, tmp_path):
  """Muxes 44.1 kHz stereo audio into a video, as phones and cameras record it; returns it at 16 kHz."""
  mono = speech_like(seconds, 44100)
  wav = str(tmp_path / "stereo.wav")
  soundfile.write(wav, np.stack([mono, 0.5 * mono], axis=1), 44100)
  ffmpeg = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y"]
  subprocess.run(
    [*ffmpeg, "-i", video_path, "-i", wav, "-c:v", "copy", "-c:a", "aac", out_path], check=True
  )
  return signal.resample_poly(0.75 * mono, 160, 441)


def talk_video(folder, scratch):
  frames = canvas(HEIGHT, WIDTH, round(TALK_SECONDS * CAMERA_FPS))
  for t, frame in enumerate(frames):
    frame[:] = place_astronaut(frame, talk_pose(t / CAMERA_FPS))
  write_camera_video(str(scratch / "talk.mp4"), frames)
  return with_stereo_audio(
    str(scratch / "talk.mp4"), str(folder / "talk.mp4"), TALK_SECONDS, scratch
  )


def scene_video(path, num_frames, draw, audio=True):
  """A 25 fps video whose frame t is `draw(t, canvas frame)`, with speech-like audio."""
  frames = canvas(HEIGHT, WIDTH, num_frames)
  for t, frame in enumerate(frames):
    frame[:] = draw(t, frame)
  video_io.write_video(str(path), frames, speech_like(num_frames / FPS) if audio else None)


def still_astronaut(x=112.0):
  pose = astronaut_pose(0.8, 0.0, (x, 88.0))
  return lambda t, frame: place_astronaut(frame, pose)


def cut_to_another_person(t, frame):
  if t < CUT_FRAME:
    return still_astronaut()(t, frame)
  frame[:] = (30, 40, 120)
  frame[40:140, 60:160] = lfw_face(100)
  return frame


def walk_pose(t):
  """Still for 1.2 s, then 3 px a frame to the right: the face box (70 px) sticks out of the
  frame by a tenth of its side from frame 64."""
  return astronaut_pose(0.8, 0.0, (95 + 3 * max(0, t - 30), 88))


def face_walks_out(t, frame):
  return place_astronaut(frame, walk_pose(t))


def second_face_joins(t, frame):
  frame = place_astronaut(frame, astronaut_pose(0.8, 0.0, (70, 88)))
  if t >= CUT_FRAME:
    frame[40:140, 120:220] = lfw_face(100)
  return frame


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
  folder = tmp_path_factory.mktemp("videos")
  expected_audio = talk_video(folder, tmp_path_factory.mktemp("scratch"))
  scene_video(folder / "cut.mp4", 60, cut_to_another_person)
  scene_video(folder / "walks.mp4", WALK_FRAMES, face_walks_out)
  scene_video(folder / "pair.mp4", 60, second_face_joins)
  scene_video(folder / "mute.mp4", 30, still_astronaut(), audio=False)
  noise = np.random.default_rng(0).integers(0, 256, (30, 120, 160, 3), dtype=np.uint8)
  video_io.write_video(str(folder / "noise.mp4"), noise, speech_like(30 / FPS))
  (folder / "notes.txt").write_text("not a video")
  return str(folder), expected_audio


@pytest.fixture(scope="module")
def ingested(video_folder, tmp_path_factory):
  logged = []
  out = str(tmp_path_factory.mktemp("shards"))
  summary = ingest.ingest_folder(video_folder[0], out, SETTINGS, workers=1, log=logged.append)
  return summary, logged, out


def clips_by_id(summary):
  return {clip.meta["clip_id"]: clip for clip in clips.read_clips(summary.shards)}


def test_keeps_the_clean_spans_and_gives_every_drop_its_reason(ingested):
  summary, logged, out = ingested
  assert [os.path.basename(p) for p in summary.shards] == ["train-00000.array_record"]
  kept = {
    c.meta["clip_id"]: (c.meta["first_frame"], c.frames.shape[0])
    for c in clips_by_id(summary).values()
  }
  assert kept.keys() == {
    "cut.mp4-000",
    "cut.mp4-001",
    "pair.mp4-000",
    "talk.mp4-000",
    "walks.mp4-000",
  }
  # Split exactly at the cut; the talk video kept whole.
  assert kept["cut.mp4-000"] == (0, CUT_FRAME)
  assert kept["cut.mp4-001"] == (CUT_FRAME, 60 - CUT_FRAME)
  assert kept["talk.mp4-000"] == (0, TALK_SECONDS * FPS)
  # Up to the last detection before the second face came (detections every 5 frames)...
  assert kept["pair.mp4-000"][0] == 0 and CUT_FRAME - 5 <= kept["pair.mp4-000"][1] <= CUT_FRAME
  # The walk ends the clip where the face leaves its still crop (found from the true eyes).
  true = np.array([face_align.eye_parameters(eyes_at(walk_pose(t))) for t in range(WALK_FRAMES)])
  left_crop = next(
    end
    for end in range(2, WALK_FRAMES)
    if not face_align.stays_in_crop(true[:end], face_align.still_parameters(true[:end]))
  )
  assert kept["walks.mp4-000"][0] == 0 and abs(kept["walks.mp4-000"][1] - (left_crop - 1)) <= 2

  # Logged in the order of the videos' names, whichever finished first.
  skips = [line for line in logged if line.startswith("skip ")]
  assert skips == [f"skip {label}: {reason}" for label, reason in summary.skipped]
  by_video = {}
  for label, reason in summary.skipped:
    by_video.setdefault(label.split()[0], []).append((label, reason))
  assert by_video["mute.mp4"] == [("mute.mp4", "no audio track")]
  assert by_video["noise.mp4"] == [("noise.mp4", "no face found")]
  assert [reason for _, reason in by_video["pair.mp4"]] == ["a second face in the frame"]
  assert [reason for _, reason in by_video["walks.mp4"]] == [
    ingest_spans.DRIFT,
    "face leaves the frame",
    "no face found",
  ]
  assert {"cut.mp4", "talk.mp4"}.isdisjoint(by_video)

  # The report beside the shards says the same, in frames.
  report = {line["video"]: line for line in ingest_staging.read_report(out, "train")}
  assert sorted(report) == ["cut.mp4", "mute.mp4", "noise.mp4", "pair.mp4", "talk.mp4", "walks.mp4"]
  assert report["pair.mp4"]["skipped"] == [
    {"frames": [kept["pair.mp4-000"][1], 60], "reason": "a second face in the frame"}
  ]
  assert report["mute.mp4"]["skipped"] == [{"frames": None, "reason": "no audio track"}]
  # The face walks on inside the frame until shortly before its box crosses the edge.
  drift, leaves, _ = report["walks.mp4"]["skipped"]
  assert drift["frames"][0] == kept["walks.mp4-000"][1]
  assert drift["frames"][1] == leaves["frames"][0] and 59 <= leaves["frames"][0] <= 64
  assert not os.path.exists(ingest_staging.staging_dir(out, "train"))


def test_clips_keep_the_sound_in_sync(video_folder, ingested):
  _, expected_audio = video_folder
  talk = clips_by_id(ingested[0])["talk.mp4-000"]
  assert talk.frames.shape == (50, 64, 64, 3) and talk.audio.shape == (50 * 640,)
  assert talk.meta["source"] == "video:talk.mp4" and talk.meta["split"] == "train"
  # Stereo mixed, resampled, in sync
  assert np.corrcoef(talk.audio, expected_audio[: talk.audio.size])[0, 1] > 0.95


def talk_eyes(t):
  """Where the astronaut's eyes are in the 25 fps frame t of talk.mp4: it shows the camera frame
  nearest its time."""
  return eyes_at(talk_pose(round(t * CAMERA_FPS / FPS) / CAMERA_FPS))


def eyes_through(transforms, true_eyes):
  """The true eyes [T, 2, 2] mapped into the output by the clip's crop transforms [T, 2, 3]."""
  return np.stack(
    [np.c_[eyes, np.ones(2)] @ np.array(m).T for m, eyes in zip(transforms, true_eyes)]
  )


def photo_crop_shifts(frames, eyes):
  """How far each frame, re-aligned to its `eyes` [T, 2, 2] in output pixels, is from the photo's
  own aligned crop, by phase correlation."""
  photo_eyes = eyes_at(astronaut_pose(1.0, 0.0, (222.0, 127.0)))
  expected = face_align.aligned_crop(data.astronaut(), face_align.eye_parameters(photo_eyes), 64)
  shifts = []
  for frame, frame_eyes in zip(frames, eyes):
    realigned = face_align.aligned_crop(frame, face_align.eye_parameters(frame_eyes), 64)
    shifts.append(np.hypot(*cv2.phaseCorrelate(gray(expected), gray(realigned))[0]))
  return np.array(shifts)


@pytest.fixture(scope="module")
def tracked_talk(video_folder, tmp_path_factory):
  """talk.mp4 alone, aligned frame by frame."""
  only_talk = tmp_path_factory.mktemp("only_talk")
  os.symlink(os.path.join(video_folder[0], "talk.mp4"), only_talk / "talk.mp4")
  out = str(tmp_path_factory.mktemp("tracked"))
  settings = ingest_video.IngestSettings(image_size=64, min_face_px=48.0, crop="track")
  summary = ingest.ingest_folder(str(only_talk), out, settings, workers=1, log=lambda line: None)
  return clips_by_id(summary)["talk.mp4-000"]


def test_tracked_crops_put_the_eyes_at_the_canonical_positions(tracked_talk):
  talk = tracked_talk
  assert talk.meta["crop"] == "track" and talk.meta["eyes_found"] > 0.9
  canonical = np.array(talk.meta["canonical_eyes"]) * 64
  errors = np.abs(eyes_through(talk.meta["crop_transforms"], map(talk_eyes, range(50))) - canonical)
  assert np.median(errors.max(axis=(1, 2))) < 1.0 and errors.max() < 2.0
  np.testing.assert_allclose(talk.meta["eyes"], np.broadcast_to(canonical, (50, 2, 2)), atol=1e-2)
  # The pixels are warped by that transform: every frame is the photo's own aligned crop, within
  # the shift that phase correlation measures between them.
  shifts = photo_crop_shifts(talk.frames, np.array(talk.meta["eyes"]))
  assert np.median(shifts) < 1.0 and max(shifts) < 1.5


def test_a_still_crop_lets_the_head_move_roll_and_shrink_inside_it(ingested):
  talk = clips_by_id(ingested[0])["talk.mp4-000"]
  assert talk.meta["crop"] == "clip"
  transforms = np.array(talk.meta["crop_transforms"])
  assert transforms.shape == (50, 2, 3) and np.all(transforms == transforms[0])
  # The recorded eyes follow the known motion through the still crop...
  eyes = np.array(talk.meta["eyes"])
  true = eyes_through(transforms, map(talk_eyes, range(50)))
  errors = np.abs(eyes - true).max(axis=(1, 2))
  assert np.median(errors) < 1.0 and errors.max() < 2.0
  # ...which carries them 25 px across the crop, rolls them 15 degrees each way and shrinks them
  # by a quarter...
  middle = true.mean(axis=1)
  distance = np.hypot(*(true[:, 1] - true[:, 0]).T)
  rolls = [roll_of(eyes) for eyes in true]
  assert middle[-1, 0] - middle[0, 0] > 20 and distance[-1] < 0.8 * distance[0]
  assert min(rolls) < -12 and max(rolls) > 12
  # ...while on average they sit at the canonical positions.
  canonical = np.array(talk.meta["canonical_eyes"]) * 64
  assert np.abs(np.median(eyes, axis=0) - canonical).max() < 1.0
  # The pixels agree: each frame aligned by its recorded eyes is the photo's own aligned crop.
  shifts = photo_crop_shifts(talk.frames, eyes)
  assert np.median(shifts) < 1.0 and max(shifts) < 2.0


def gray(image):
  return cv2.cvtColor(image.astype(np.float32), cv2.COLOR_RGB2GRAY)


def test_long_clean_stretches_are_cut_into_consecutive_clips(
  video_folder, tracked_talk, tmp_path, capsys
):
  only_talk = tmp_path / "videos"
  only_talk.mkdir()
  os.symlink(os.path.join(video_folder[0], "talk.mp4"), only_talk / "talk.mp4")
  out = str(tmp_path / "halves")
  flags = ["--max-seconds", "1", "--min-face", str(SETTINGS.min_face_px), "--crop", "track"]
  assert ingest.main(["--videos", str(only_talk), "--out", out, *flags, "--workers", "1"]) == 0
  assert capsys.readouterr().out.splitlines()[-1] == (
    f"train: 2 clips (2.0 s) at 64x64 -> 1 shards in {out}; skipped 0 (see "
    f"{out}/train-ingest_report.jsonl)"
  )
  halves = clips.read_clips(clips.shard_paths(out, "train"))
  first, second = halves
  assert [first.meta["clip_id"], second.meta["clip_id"]] == ["talk.mp4-000", "talk.mp4-001"]
  assert first.frames.shape[0] == second.frames.shape[0] == 25
  assert second.meta["start_seconds"] == 1.0
  np.testing.assert_array_equal(np.concatenate([first.audio, second.audio]), tracked_talk.audio)
  # Aligned over the whole clean stretch, so the halves are the whole clip's frames.
  np.testing.assert_array_equal(np.concatenate([first.frames, second.frames]), tracked_talk.frames)


def test_a_clip_begun_where_the_last_lost_its_face_is_reported():
  report = {
    "video": "v.mp4",
    "clips": [
      {"clip_id": "v.mp4-000", "frames": [0, 30]},
      {"clip_id": "v.mp4-001", "frames": [30, 80], "split": ingest_spans.DRIFT},
    ],
    "skipped": [],
  }
  assert ingest.split_lines(report) == [("v.mp4 at 1.2 s", ingest_spans.DRIFT)]


def test_command_line_errors(video_folder, tmp_path, capsys):
  out = str(tmp_path / "out")
  assert ingest.main(["--videos", str(tmp_path / "nope"), "--out", out]) == 2
  assert "does not exist" in capsys.readouterr().err
  empty = tmp_path / "empty"
  empty.mkdir()
  assert ingest.main(["--videos", str(empty), "--out", out]) == 2
  assert "no .mp4" in capsys.readouterr().err
  folder, _ = video_folder
  taken = tmp_path / "taken"
  taken.mkdir()
  (taken / "train-00000.array_record").write_bytes(b"")
  assert ingest.main(["--videos", folder, "--out", str(taken)]) == 2
  assert "already holds train shards" in capsys.readouterr().err
  for flags, message in (
    (["--workers", "0"], "--workers >= 1"),
    (["--min-face", "10"], "--min-face >= 24"),
    (["--max-seconds", "0.5"], "--max-seconds >= 1"),
    (["--crop", "box"], "invalid choice: 'box'"),
    (["--project", "x"], "unrecognized arguments: --project x"),
  ):
    try:
      status = ingest.main(["--videos", folder, "--out", out, *flags])
    except SystemExit as e:  # argparse exits from inside parse_args
      status = e.code
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def phone_pose(t):
  """A 176x144 phone video's face: 50 px, the head tilted 20 degrees, swaying in the hand."""
  sway = 3 * np.array(
    [math.sin(2 * math.pi * 1.3 * t / FPS), math.cos(2 * math.pi * 0.9 * t / FPS)]
  )
  roll = 20 + 3 * math.sin(2 * math.pi * t / FPS)
  return astronaut_pose(50 / 87, roll, (88, 70) + sway)


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
  """Few, short videos for the runs that ingest a folder several times."""
  folder = tmp_path_factory.mktemp("small")
  frames = canvas(144, 176, 50)
  for t, frame in enumerate(frames):
    frame[:] = place_astronaut(frame, phone_pose(t))
  video_io.write_video(str(folder / "phone.mp4"), frames, speech_like(2.0))
  scene_video(folder / "short.mp4", 30, still_astronaut(x=100.0))
  scene_video(folder / "silent.mp4", 30, still_astronaut(), audio=False)
  return str(folder)


@pytest.fixture(scope="module")
def small_local_run(small_folder, tmp_path_factory):
  """The small folder ingested by two worker processes."""
  out = str(tmp_path_factory.mktemp("local"))
  summary = ingest.ingest_folder(small_folder, out, SETTINGS, workers=2, log=lambda line: None)
  return summary, out


def test_finds_and_aligns_a_small_tilted_face_in_a_phone_video(small_local_run):
  phone = clips_by_id(small_local_run[0])["phone.mp4-000"]
  assert phone.frames.shape[0] == 50
  # The head's tilt is the still crop's; its sway is in the recorded eyes.
  canonical = np.array(phone.meta["canonical_eyes"]) * 64
  eyes = np.array(phone.meta["eyes"])
  true = eyes_through(phone.meta["crop_transforms"], map(eyes_at, map(phone_pose, range(50))))
  errors = np.abs(eyes - true).max(axis=(1, 2))
  assert np.median(errors) < 1.5 and errors.max() < 3.0
  assert np.abs(np.median(true, axis=0) - canonical).max() < 1.5


def shard_bytes(out):
  return {
    os.path.basename(path): pathlib.Path(path).read_bytes()
    for path in clips.shard_paths(out, "train")
  }


def test_beam_writes_the_same_shards_as_the_local_workers(small_folder, small_local_run, tmp_path):
  pytest.importorskip("apache_beam", reason="Apache Beam: pip install 'jaxtalk[beam]'")
  summary = ingest.ingest_folder(
    small_folder, str(tmp_path), SETTINGS, runner="DirectRunner", log=lambda line: None
  )
  local, local_out = small_local_run
  assert shard_bytes(str(tmp_path)) == shard_bytes(local_out)
  assert summary.skipped == local.skipped == [("silent.mp4", "no audio track")]
  assert ingest_staging.read_report(str(tmp_path), "train") == ingest_staging.read_report(
    local_out, "train"
  )


def test_a_rerun_ingests_only_the_videos_not_yet_finished(
  small_folder, small_local_run, tmp_path, monkeypatch
):
  # An interrupted run left phone.mp4 finished in the staging folder.
  staging = ingest_staging.staging_dir(str(tmp_path), "train")
  ingest_video.ingest_video(os.path.join(small_folder, "phone.mp4"), staging, SETTINGS)
  ingested_now = []

  def counted(path, *args):
    ingested_now.append(os.path.basename(path))
    return ingest_video.ingest_video(path, *args)

  monkeypatch.setattr(ingest, "ingest_video", counted)
  logged = []
  ingest.ingest_folder(small_folder, str(tmp_path), SETTINGS, workers=1, log=logged.append)
  assert ingested_now == ["short.mp4", "silent.mp4"]
  assert "1 of 3 videos were finished by an earlier run" in logged
  assert shard_bytes(str(tmp_path)) == shard_bytes(small_local_run[1])
  # Staged with other settings, a video is ingested again.
  other = ingest_video.IngestSettings(image_size=32)
  ingest_video.ingest_video(
    os.path.join(small_folder, "phone.mp4"),
    ingest_staging.staging_dir(str(tmp_path / "b"), "train"),
    SETTINGS,
  )
  assert (
    ingest_staging.finished_report(
      ingest_staging.staging_dir(str(tmp_path / "b"), "train"), "phone.mp4", other
    )
    is None
  )


def test_the_beam_runner_without_beam_installed_is_a_one_line_error(
  small_folder, tmp_path, monkeypatch, capsys
):
  monkeypatch.setitem(sys.modules, "apache_beam", None)  # makes `import apache_beam` fail
  assert (
    ingest.main(["--videos", small_folder, "--out", str(tmp_path), "--runner", "DirectRunner"]) == 2
  )
  err = capsys.readouterr().err
  assert "pip install 'jaxtalk[beam]'" in err and err.count("\n") == 1
