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
from jaxtalk.eval.probe import fit_probe
from jaxtalk.eval.synthtalk_eval import LIP_SYNC_ROWS, even_batch
from jaxtalk.inference import bundle

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


def test_probe_fits_a_linear_relation_exactly():
  rng = np.random.default_rng(3)
  latents = rng.standard_normal((500, 12)) * rng.uniform(0.1, 10, 12)
  weights, bias = rng.standard_normal(12), 0.7
  targets = latents @ weights + bias
  probe = fit_probe(latents, targets, ridge=0.0)
  np.testing.assert_allclose(probe.weights, weights, atol=1e-9)
  assert probe.bias == pytest.approx(bias, abs=1e-9)
  # The default ridge shrinks a well-conditioned fit by about 0.1%, whatever the latents' scales.
  residual = fit_probe(latents, targets)(latents) - targets
  assert np.std(residual) < 3e-3 * np.std(targets)


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


@pytest.fixture(scope="module")
def bundle_and_data(tmp_path_factory):
  root = tmp_path_factory.mktemp("eval")
  config = tiny_config()
  bundle.save_bundle(root / "model", config, random_params(config))
  for split, clips in (("train", 3), ("eval", 2)):
    generate_split(str(root / "data"), split, clips, CLIP_SECONDS, 16, seed=0, workers=1)
  return root


def test_eval_command_end_to_end(bundle_and_data, capsys):
  root = bundle_and_data
  out = root / "scores.json"
  assert (
    main(
      [
        "--checkpoint",
        str(root / "model"),
        "--data",
        str(root / "data"),
        "--clips",
        "2",
        "--probe-clips",
        "3",
        "--json",
        str(out),
      ]
    )
    == 0
  )
  results = json.loads(out.read_text())
  assert results["clips"] == 2 and results["frames"] == 80
  assert results["probe"]["train_clips"] == 3 and results["probe"]["train_frames"] == 120
  assert np.isfinite(results["reconstruction_psnr_db"]) and results["reconstruction_psnr_db"] > 0
  assert set(results["lip_sync"]) == set(LIP_SYNC_ROWS)
  for row in results["lip_sync"].values():
    assert np.isfinite(row["mae"]) and -1 <= row["pearson"] <= 1 and abs(row["offset_frames"]) <= 10
  printed = capsys.readouterr().out
  assert "PSNR" in printed and "audio-free" in printed


def test_eval_command_reports_user_errors(bundle_and_data, tmp_path, capsys):
  root = bundle_and_data
  assert main(["--checkpoint", str(tmp_path / "missing"), "--data", str(root / "data")]) == 2
  assert "does not exist" in capsys.readouterr().err
  assert main(["--checkpoint", str(root / "model"), "--data", str(tmp_path)]) == 2
  assert "no train shards" in capsys.readouterr().err
