"""SynthTalk evaluation: the metrics measure what they claim, and the command runs end to end."""

import json

import imageio.v3
import numpy as np
import pytest
import scipy.ndimage
from tiny_configs import tiny_config

from jaxtalk.bench.model import random_params
from jaxtalk.data.synthtalk.face import IDENTITY_PARAMS
from jaxtalk.data.synthtalk.generate import generate_split
from jaxtalk.data.synthtalk.motion import MOTION_PARAMS
from jaxtalk.eval import photos
from jaxtalk.eval.__main__ import main
from jaxtalk.eval.acting import (
  EmotionClassifier,
  accuracy,
  evaluate_acting,
  format_report,
  frame_emotions,
  labelled_windows,
  window_features,
)
from jaxtalk.eval.drift import window_bounds
from jaxtalk.eval.identity import identity_error, identity_probe
from jaxtalk.eval.metrics import (
  blinks_per_minute,
  lip_sync_scores,
  pearson,
  psnr,
  std_ratio,
  sync_offset,
)
from jaxtalk.eval.probe import motion_content
from jaxtalk.eval.reader import Reader
from jaxtalk.eval.synthtalk_eval import ROWS, by_language, even_batch, ordering_problems
from jaxtalk.eval.train_reader import train_reader
from jaxtalk.inference import bundle
from jaxtalk.inference.generate import SampleOptions, TalkingHead
from jaxtalk.media.audio_io import save_wav
from jaxtalk.timebase import FPS, SAMPLES_PER_FRAME

CLIP_SECONDS = 1.6  # 40 frames: room for the +-10 frame offset search


def smooth_series(rng, length):
  return scipy.ndimage.gaussian_filter1d(rng.standard_normal(length), 2.0)


@pytest.mark.parametrize("shift", [3, -4, 0])
def test_offset_recovers_a_known_shift(shift):
  rng = np.random.default_rng(1)
  truths = [smooth_series(rng, 120) for _ in range(3)]
  # predicted[t] = truth[t - shift]: the video runs `shift` frames late.
  predicted = [np.roll(t, shift) for t in truths]
  assert sync_offset(predicted, truths) == shift


def test_offset_of_a_motionless_video_is_zero():
  truth = smooth_series(np.random.default_rng(2), 60)
  assert sync_offset([np.zeros(60)], [truth]) == 0


def test_psnr_and_scores_on_known_values():
  frames = np.zeros((2, 4, 4, 3), np.uint8)
  noisy = frames.copy()
  noisy[0] = 10  # mse 100 -> 10 log10(255^2 / 100)
  np.testing.assert_allclose(psnr(noisy, frames)[0], 10 * np.log10(255.0**2 / 100))
  assert np.isfinite(psnr(frames, frames)).all()
  truth = np.linspace(0, 1, 30)
  scores = lip_sync_scores([truth + 0.1], [truth])
  assert scores["mae"] == pytest.approx(0.1)
  assert scores["pearson"] == pytest.approx(1.0)
  assert scores["offset_frames"] == 0
  assert pearson(np.ones(5), np.arange(5.0)) == 0.0


def test_even_batch_covers_frames_in_as_few_batches():
  assert even_batch(100, 32) == 25
  assert even_batch(40, 16) == 14
  assert even_batch(5, 32) == 5


def test_blink_rate_and_amplitude_ratio_on_known_series():
  blink = np.zeros(FPS * 6)  # six seconds, lids shut three times
  for start in (10, 60, 120):
    blink[start : start + 4] = 1.0
  assert blinks_per_minute(blink) == pytest.approx(30.0)
  truth = np.sin(np.linspace(0, 6, 50))
  assert std_ratio([0.5 * truth + 3.0], [truth]) == pytest.approx(0.5)


def _rows(pearsons, lse_cs):
  return {
    name: {"pearson": p, "lse_c": c} for name, p, c in zip(ROWS, pearsons, lse_cs, strict=True)
  }


def test_ordering_check_fires_when_floor_or_ceiling_is_out_of_place():
  assert ordering_problems(_rows([0.95, 0.8, 0.6, 0.1], [0.9, 0.7, 0.5, 0.1])) == []
  # A renderer that ignores motion: its ground-truth motion reads no better than audio-free.
  broken = ordering_problems(_rows([0.95, 0.05, 0.3, 0.1], [0.9, 0.02, 0.5, 0.1]))
  assert len(broken) == 2 and all("audio-free video does not have the worst" in p for p in broken)
  floor = ordering_problems(_rows([0.5, 0.8, 0.6, 0.1], [0.9, 0.7, 0.5, 0.1]))
  assert floor == ["the ground-truth frames do not have the best mouth-opening correlation (0.500)"]


@pytest.fixture(scope="module")
def bundle_and_data(tmp_path_factory):
  """A tiny random model at 16 px, SynthTalk clips at its size, and a reader trained on them."""
  root = tmp_path_factory.mktemp("eval")
  config = tiny_config()
  bundle.save_bundle(root / "model", config, random_params(config))
  # Ten eval clips (five people) for the identity probe; two of them are scored.
  for split, clips in (("train", 3), ("eval", 10)):
    generate_split(str(root / "data"), split, clips, CLIP_SECONDS, 16, seed=0, workers=1)
  train_reader(str(root / "data"), steps=20, batch=8).save(root / "reader")
  return root


class _Thumbnails:
  """Features for FID's plumbing: 4x4 thumbnails. Inception-v3 at 299 px, whose parity with
  PyTorch tests/test_fid.py checks, was half of this command's time on two cores."""

  def features(self, frames):
    size = frames.shape[1]
    blocks = frames.reshape(len(frames), 4, size // 4, 4, size // 4, 3).mean(axis=(2, 4))
    return blocks.reshape(len(frames), -1).astype(np.float64)


def test_eval_command_end_to_end(bundle_and_data, capsys, monkeypatch):
  root = bundle_and_data
  out = root / "scores.json"
  loaded = []
  monkeypatch.setattr(
    "jaxtalk.eval.inception.load_inception", lambda path: loaded.append(path) or _Thumbnails()
  )
  args = ["--checkpoint", str(root / "model"), "--data", str(root / "data"), "--clips", "2"]
  args += ["--probe-clips", "10", "--drift-minutes", "0.1", "--fid-weights", "inception.st"]
  assert main([*args, "--reader", str(root / "reader"), "--json", str(out)]) == 0
  results = json.loads(out.read_text())
  assert (root / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  strip = imageio.v3.imread(root / "scores_frames.png")  # one row of 8 frames per row of ROWS
  assert strip.shape == (16 * len(ROWS), 16 * 8, 3)
  assert results["clips"] == 2 and results["frames"] == 80
  assert set(results["rows"]) == set(ROWS) == {"gt_frames", "gt_motion", "generated", "audio_free"}
  for row in results["rows"].values():
    assert np.isfinite(row["mae"]) and -1 <= row["pearson"] <= 1 and abs(row["offset"]) <= 10
    assert set(row["pose_amplitude"]) == {"yaw", "pitch", "roll", "tx", "ty"}
    assert row["lse_d"] >= 0 and abs(row["sync_offset"]) <= 15
  assert set(results["reader"]["on_these_clips"]) >= {"mouth_open", "blink", "yaw"}
  assert results["reader"]["held_out_accuracy"]["mouth_open"]["pearson"] <= 1
  assert results["reconstruction"]["psnr"] > 0 and -1 <= results["reconstruction"]["ssim"] <= 1
  assert isinstance(results["sanity"], list)
  identity = results["identity"]
  for name in ROWS:
    # NaN when the 20-step reader reads no identity parameter well enough to count.
    error = results["rows"][name]["identity_error"]
    assert error >= 0 if identity["params"] else np.isnan(error)
  assert identity["leakage"]["identities"] == 5
  for probe in ("motion_latents", "frame_thumbnails"):
    assert identity["leakage"][probe]["r2"] <= 1
  assert set(results["motion_content"]["per_param"]) <= set(MOTION_PARAMS)
  assert loaded == ["inception.st"]
  assert results["fid"]["frames_per_row"] == 20  # every 4th of 2 x 40 frames
  assert set(results["fid"]["rows"]) == set(ROWS)
  assert all(value > -1e-6 for value in results["fid"]["rows"].values())
  windows = results["drift"]["windows"]
  assert len(windows) == 2 and windows[-1]["end_s"] == pytest.approx(6.0)
  assert set(results["drift"]["last_over_first"]) >= {
    "mae",
    "identity_error",
    "pose_amplitude",
    "acting_error",
  }
  printed = capsys.readouterr().out
  words = ("PSNR", "audio-free", "LSE-C", "identity leakage", "motion latents", "drift", "FID")
  for word in (*words, "scores.png"):
    assert word in printed


def test_acting_evaluation_end_to_end(bundle_and_data):
  """The acting evaluation's plumbing on a random tiny model: every row and control is scored."""
  root = bundle_and_data
  model = TalkingHead.load(root / "model")
  results = evaluate_acting(
    model,
    str(root / "data"),
    Reader.load(root / "reader"),
    num_clips=2,
    control_portraits=1,
    train_clips=3,
    window_frames=20,
  )
  emotion, controls = results["emotion"], results["controls"]
  assert emotion["chance"] == 0.25 and emotion["windows"]["gt_frames"] >= 2
  assert emotion["windows"]["label"] == 4  # every window of a labelled video is the label's
  for value in (*emotion["accuracy"].values(), *emotion["mouth_pearson"].values()):
    assert np.isnan(value) or -1 <= value <= 1
  assert set(controls["pose_std_ratio"]) == {"None", "0.0", "1.0", "2.0"}
  assert controls["pose_std_ratio"]["1.0"]["vs_1"] == pytest.approx(1.0)
  assert set(controls["blinks_per_minute"]) == {"0.0", "12.0", "30.0"}
  assert set(controls["intensity"]) == {"happy", "sad", "angry"}
  assert "emotion recognisability" in format_report(results)


def test_emotion_classifier_reads_windows_of_one_emotion():
  rng = np.random.default_rng(0)
  emotions = ("neutral", "happy", "sad")
  centres = {"neutral": 0.0, "happy": 0.5, "sad": -0.5}
  labels = ["neutral"] * 50 + ["happy"] * 35 + ["sad"] * 65
  reading = {
    name: rng.normal(scale=0.05, size=len(labels))
    for name in ("brow", "mouth_width", "blink", "yaw", "pitch", "roll")
  }
  reading["smile"] = np.array([centres[e] for e in labels]) + rng.normal(scale=0.05, size=150)
  windows = labelled_windows(reading, labels, 25)
  # The window [50, 75) is all happy, [75, 100) mostly sad but not enough: it is skipped.
  assert [(w[1], w[2]) for w in windows] == [
    ("neutral", 0),
    ("neutral", 25),
    ("happy", 50),
    ("sad", 100),
    ("sad", 125),
  ]
  train = []
  for k in range(60):
    emotion = emotions[k % 3]
    part = {name: rng.normal(scale=0.05, size=25) for name in reading}
    part["smile"] = part["smile"] + centres[emotion]
    train.append((window_features(part, 0, 25), emotion))
  classifier = EmotionClassifier.fit(np.stack([f for f, _ in train]), [e for _, e in train])
  assert accuracy(classifier, windows) == 1.0
  assert frame_emotions(
    {"acting": {"segments": [{"start": 0, "emotion": "sad"}, {"start": 2, "emotion": "happy"}]}}, 4
  ) == ["sad", "sad", "happy", "happy"]


def test_eval_command_reports_user_errors(bundle_and_data, tmp_path, capsys):
  root = bundle_and_data
  assert main(["--checkpoint", str(tmp_path / "missing"), "--data", str(root / "data")]) == 2
  assert "does not exist" in capsys.readouterr().err
  assert main(["--checkpoint", str(root / "model"), "--data", str(tmp_path)]) == 2
  assert "no eval shards" in capsys.readouterr().err
  # The shipped reader reads frames of a multiple of 64 px, not this model's 16 px.
  assert main(["--checkpoint", str(root / "model"), "--data", str(root / "data")]) == 2
  assert "multiple of 64 px, not 16 px" in capsys.readouterr().err


def test_identity_error_is_in_between_identity_stds():
  portrait = {"skin_r": np.array([0.5]), "hair_r": np.array([0.2])}
  frames = {"skin_r": np.array([0.5, 0.7]), "hair_r": np.array([0.2, 0.2])}
  scores = identity_error(
    [frames], [portrait], {"skin_r": 0.1, "hair_r": 0.3}, ["skin_r", "hair_r"]
  )
  assert scores["per_param"] == pytest.approx({"skin_r": 1.0, "hair_r": 0.0})
  assert scores["error"] == pytest.approx(0.5)


def test_identity_probe_reads_identity_only_where_it_is():
  rng = np.random.default_rng(0)
  people, frames = 60, 10
  identity = rng.uniform(size=(people, len(IDENTITY_PARAMS)))
  targets = np.repeat(identity, frames, axis=0)
  groups = np.repeat(np.arange(people), frames)
  width = 2 * len(IDENTITY_PARAMS)  # room for every parameter in a linear mix
  mixing = rng.standard_normal((len(IDENTITY_PARAMS), width))
  holds_identity = targets @ mixing + 0.01 * rng.standard_normal((len(targets), width))
  assert identity_probe(holds_identity, targets, groups)["r2"] > 0.9
  # Motion-like features: vary frame to frame, independent of who it is.
  motion_only = rng.standard_normal((len(targets), width))
  assert identity_probe(motion_only, targets, groups)["r2"] < 0.05
  assert identity_probe(motion_only[:40], targets[:40], groups[:40]) is None  # 4 people


def test_drift_windows_are_one_per_whole_minute_and_at_least_two():
  assert window_bounds(3 * 60 * FPS) == [(0, 1500), (1500, 3000), (3000, 4500)]
  assert window_bounds(150) == [(0, 75), (75, 150)]
  assert window_bounds(150 * FPS) == [(0, 1875), (1875, 3750)]  # 2.5 min: two equal windows


def test_photo_scores_follow_the_mouth_and_the_rest_of_the_frame():
  size, frames = 32, 50
  rng = np.random.default_rng(0)
  portrait = rng.integers(60, 200, (size, size, 3)).astype(np.uint8)
  loudness_envelope = np.abs(np.sin(np.linspace(0, 6 * np.pi, frames)))
  waveform = np.concatenate(
    [a * np.sin(np.linspace(0, 200, SAMPLES_PER_FRAME)) for a in loudness_envelope]
  ).astype(np.float32)
  video = np.repeat(portrait[None], frames, axis=0).astype(np.int32)
  mouth = photos.mouth_mask(size)
  video[:, mouth] += np.rint(40 * loudness_envelope)[:, None, None].astype(np.int32)
  scores = photos.photo_scores(np.clip(video, 0, 255).astype(np.uint8), portrait, waveform)
  assert scores["loudness_correlation"] > 0.99
  assert 38 <= scores["mouth_motion"] <= 40.5
  assert scores["ssim_outside_mouth"] > 0.9
  # Frames that are another picture outside the mouth have lost the photo.
  lost = np.where(mouth[None, :, :, None], video, rng.integers(0, 256, video.shape))
  assert photos.photo_scores(lost.astype(np.uint8), portrait, waveform)["ssim_outside_mouth"] < 0.2


def test_photos_command_talks_with_a_real_photo(bundle_and_data, tmp_path, capsys):
  import imageio.v3 as iio
  import skimage.data

  root = bundle_and_data
  photo, speech = tmp_path / "astronaut.png", tmp_path / "speech.wav"
  iio.imwrite(photo, skimage.data.astronaut())
  save_wav(str(speech), np.sin(np.linspace(0, 3000, 16_000)).astype(np.float32) * 0.3)
  out, strip = tmp_path / "photos.json", tmp_path / "strip.png"
  args = ["--checkpoint", str(root / "model"), "--image", str(photo), "--audio", str(speech)]
  assert photos.main([*args, "--json", str(out), "--strip", str(strip)]) == 0
  scores = json.loads(out.read_text())["astronaut"]
  assert scores["frames"] == 25 and -1 <= scores["loudness_correlation"] <= 1
  assert iio.imread(strip).shape == (16, 16 * (1 + photos.STRIP_FRAMES), 3)
  assert "real photographs talking" in capsys.readouterr().out
  assert photos.main([*args[:2], "--image", str(tmp_path / "none.png")]) == 2
  assert "does not exist" in capsys.readouterr().err


def test_sampling_warns_once_about_an_unfamiliar_portrait(bundle_and_data, tmp_path, capsys):
  import imageio.v3 as iio
  import skimage.data

  import sample

  root = bundle_and_data
  config, params = bundle.load_bundle(root / "model")
  portrait = np.asarray(skimage.data.astronaut()[::32, ::32])  # 16 px, the tiny model's size
  options = SampleOptions.from_config(config.sample)
  redrawn = TalkingHead(config, params).portrait_psnr(portrait, options)
  assert 0 < redrawn < 100
  assert TalkingHead(config, params).unfamiliar_portrait(portrait, options) is None  # 0: off
  config.data.familiar_psnr = redrawn + 1.0
  warning = TalkingHead(config, params).unfamiliar_portrait(portrait, options)
  assert warning.startswith("warning: this portrait is far from the faces") and "\n" not in warning
  config.data.familiar_psnr = redrawn - 1.0
  assert TalkingHead(config, params).unfamiliar_portrait(portrait, options) is None
  # sample.py says it in one line on stderr and still writes the video.
  config.data.familiar_psnr = 100.0
  bundle.save_bundle(tmp_path / "strict", config, params)
  photo, speech, out = tmp_path / "photo.png", tmp_path / "speech.wav", tmp_path / "video.mp4"
  iio.imwrite(photo, skimage.data.astronaut())
  save_wav(str(speech), 0.3 * np.sin(np.linspace(0, 1500, 8_000)).astype(np.float32))
  argv = ["--checkpoint", str(tmp_path / "strict"), "--image", str(photo), "--audio", str(speech)]
  assert sample.main([*argv, "--out", str(out)]) == 0
  err = capsys.readouterr().err
  assert out.stat().st_size > 0 and err.count("warning:") == 1


def test_mouth_scores_are_split_by_language():
  truth = [np.sin(np.arange(50.0) + k) for k in range(3)]
  readings = [{"mouth_open": t.copy()} for t in truth[:2]] + [{"mouth_open": -truth[2]}]
  full = [np.stack([t] * len(MOTION_PARAMS), axis=1) for t in truth]
  scores = by_language(readings, full, ["en", "en", "de"])
  assert list(scores) == ["de", "en"] and scores["en"]["clips"] == 2
  assert scores["en"]["pearson"] == pytest.approx(1.0) and scores["en"]["mae"] == 0
  assert scores["de"]["pearson"] == pytest.approx(-1.0)
  assert by_language(readings, full, [None, None, None]) == {}


def test_motion_content_reads_the_motion_the_latents_carry_and_only_that():
  rng = np.random.default_rng(0)
  people, frames = 30, 10
  motions = [rng.standard_normal((frames, 2)) for _ in range(people)]
  # Each person's latent holds the first parameter (mixed with a per-person offset, which the
  # within-clip change removes) and noise in place of the second.
  offsets, mixing = rng.standard_normal((people, 4)), rng.standard_normal((1, 2))
  latents = [
    np.c_[m[:, :1] @ mixing, rng.standard_normal((frames, 2))] + offset
    for m, offset in zip(motions, offsets)
  ]
  probe = motion_content(latents, motions, list(range(people)), ("carried", "missing"))
  assert probe["per_param"]["carried"] > 0.99
  assert abs(probe["per_param"]["missing"]) < 0.05
  assert motion_content(latents[:4], motions[:4], list(range(4)), ("a", "b")) is None
