"""SynthTalk evaluation: the metrics measure what they claim, and the command runs end to end."""

import json

import numpy as np
import pytest
import scipy.ndimage
from tiny_configs import tiny_config

from jaxtalk.bench.model import random_params
from jaxtalk.data.synthtalk.generate import generate_split
from jaxtalk.eval.__main__ import main
from jaxtalk.eval.metrics import lip_sync_scores, pearson, psnr, sync_offset
from jaxtalk.eval.synthtalk_eval import (
  ROWS,
  blinks_per_minute,
  even_batch,
  ordering_problems,
  std_ratio,
)
from jaxtalk.eval.train_reader import train_reader
from jaxtalk.inference import bundle
from jaxtalk.timebase import FPS

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
  for split, clips in (("train", 3), ("eval", 2)):
    generate_split(str(root / "data"), split, clips, CLIP_SECONDS, 16, seed=0, workers=1)
  train_reader(str(root / "data"), steps=20, batch=8).save(root / "reader")
  return root


def test_eval_command_end_to_end(bundle_and_data, capsys):
  root = bundle_and_data
  out = root / "scores.json"
  args = ["--checkpoint", str(root / "model"), "--data", str(root / "data"), "--clips", "2"]
  assert main([*args, "--reader", str(root / "reader"), "--json", str(out)]) == 0
  results = json.loads(out.read_text())
  assert results["clips"] == 2 and results["frames"] == 80
  assert set(results["rows"]) == set(ROWS) == {"gt_frames", "gt_motion", "generated", "audio_free"}
  for row in results["rows"].values():
    assert np.isfinite(row["mae"]) and -1 <= row["pearson"] <= 1 and abs(row["offset"]) <= 10
    assert set(row["pose_amplitude"]) == {"yaw", "pitch", "roll"}
    assert row["lse_d"] >= 0 and abs(row["sync_offset"]) <= 15
  assert set(results["reader"]["on_these_clips"]) >= {"mouth_open", "blink", "yaw"}
  assert results["reader"]["held_out_accuracy"]["mouth_open"]["pearson"] <= 1
  assert results["reconstruction"]["psnr"] > 0 and -1 <= results["reconstruction"]["ssim"] <= 1
  assert isinstance(results["sanity"], list)
  printed = capsys.readouterr().out
  assert "PSNR" in printed and "audio-free" in printed and "LSE-C" in printed


def test_eval_command_reports_user_errors(bundle_and_data, tmp_path, capsys):
  root = bundle_and_data
  assert main(["--checkpoint", str(tmp_path / "missing"), "--data", str(root / "data")]) == 2
  assert "does not exist" in capsys.readouterr().err
  assert main(["--checkpoint", str(root / "model"), "--data", str(tmp_path)]) == 2
  assert "no eval shards" in capsys.readouterr().err
  # The shipped reader reads the demo's 64 px frames, not this model's 16 px.
  assert main(["--checkpoint", str(root / "model"), "--data", str(root / "data")]) == 2
  assert "reads 64 px frames, not 16 px" in capsys.readouterr().err
