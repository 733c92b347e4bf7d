"""Benchmark: every measurement runs on a tiny model and reports positive, consistent timings."""

import contextlib
import io
import json
import time

import jax
import numpy as np
import pytest
from tiny_configs import tiny_config

from jaxtalk.bench import __main__ as bench_main
from jaxtalk.bench import streaming as bench_streaming
from jaxtalk.bench import training as bench_training
from jaxtalk.bench.machine import describe_machine
from jaxtalk.bench.model import DEMO_CONFIG, load_config_file, random_params
from jaxtalk.bench.report import format_report
from jaxtalk.bench.sampling import synthtalk_inputs
from jaxtalk.bench.timing import measure
from jaxtalk.bench.training import synthetic_batch
from jaxtalk.inference.bundle import save_bundle
from jaxtalk.inference.generate import TalkingHead
from jaxtalk.models.factory import Models
from jaxtalk.stages import STAGES


@pytest.fixture(scope="module")
def tiny():
  config = tiny_config()
  return config, TalkingHead(config, random_params(config))


@pytest.fixture(scope="module")
def bench_run(tiny, tmp_path_factory):
  """One run of the command on the tiny model (every program compiles once), its JSON and output."""
  config, model = tiny
  out = tmp_path_factory.mktemp("bench") / "bench.json"
  capture = io.StringIO()
  # The command's loader is what would read a bundle or the demo config; here it gives the tiny model.
  with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(capture):
    patch.setattr(bench_main, "load_model", lambda checkpoint: (config, model.params, "tiny model"))
    argv = ["--seconds", "0.8", "--lengths", "0.48", "--skip-startup", "--json", str(out)]
    assert bench_main.main(argv) == 0
  return json.loads(out.read_text()), capture.getvalue()


def test_measure_separates_compilation_from_running():
  calls = []

  def fn():
    time.sleep(0.01 if calls else 0.2)  # the first call is slow, like a compiling one
    calls.append(1)
    return np.zeros(1)

  timing, _ = measure(fn, repeats=2)
  assert len(calls) == 3
  assert 0.01 <= timing.seconds < 0.15 and timing.compile_seconds >= 0.05


def test_random_params_have_the_bundle_layout(tiny):
  config, model = tiny
  expected = Models.from_config(config).abstract_params()
  assert jax.tree.structure(model.params) == jax.tree.structure(expected)
  for param, shape in zip(jax.tree.leaves(model.params), jax.tree.leaves(expected)):
    assert param.shape == shape.shape and np.isfinite(param).all()


def test_without_a_bundle_the_demo_config_gets_random_weights(tmp_path, monkeypatch):
  monkeypatch.setattr(bench_main, "DEMO_BUNDLE", tmp_path / "no-demo-model")
  config, params, description = bench_main.load_model(None)
  assert config.data.image_size == load_config_file(DEMO_CONFIG).data.image_size
  assert "random weights" in description and "no-demo-model" in description
  assert jax.tree.structure(params) == jax.tree.structure(
    Models.from_config(config).abstract_params()
  )


def test_synthtalk_inputs_have_the_requested_length(tiny):
  config, _ = tiny
  portrait, waveform = synthtalk_inputs(config, seconds=0.8)
  assert portrait.shape == (16, 16, 3) and portrait.dtype == np.uint8
  assert waveform.shape == (20 * 640,) and np.abs(waveform).max() > 0


def test_file_speed(bench_run):
  speed = bench_run[0]["sampling"]
  assert speed["frames"] == 20 and speed["audio_seconds"] == pytest.approx(0.8)
  assert speed["seconds"] > 0 and speed["motion_seconds"] > 0 and speed["render_seconds"] > 0
  assert speed["compile_seconds"] >= 0
  assert speed["rtf_total"] == pytest.approx(speed["seconds"] / 0.8)
  assert speed["frames_per_second"] == pytest.approx(20 / speed["seconds"])


def test_live_stream(bench_run, tiny):
  live = bench_run[0]["live"]
  _, model = tiny
  layout = model.stream(np.zeros((16, 16, 3), np.uint8)).motion.layout
  assert live["lookahead_ms"] == layout.lookahead_ms and live["chunk_ms"] == 40 * layout.chunk
  # The first frame waits for its audio and the look-ahead, then for compute only.
  waited = (1 + layout.lookahead_frames) * 0.04
  assert live["first_frame_seconds"] == pytest.approx(
    waited + live["first_frame_after_lookahead_seconds"]
  )
  assert 0 <= live["first_frame_after_lookahead_seconds"] <= live["chunk_latency_max_seconds"]
  assert 0 < live["chunk_latency_p50_seconds"] <= live["chunk_latency_p95_seconds"]
  assert live["chunk_latency_p95_seconds"] <= live["chunk_latency_max_seconds"]
  assert live["rtf"] > 0


def test_a_fresh_process_compiles_once_and_then_loads_from_the_disk_cache(tiny, tmp_path):
  config, model = tiny
  save_bundle(tmp_path / "bundle", config, model.params)
  runs = bench_streaming.startup(str(tmp_path / "bundle"))
  empty, filled = runs["empty_cache"], runs["disk_cache"]
  assert empty["programs_compiled"] > 0 and empty["programs_loaded"] == 0
  assert filled["programs_compiled"] == 0
  assert filled["programs_loaded"] == empty["programs_compiled"]
  assert empty["compile_seconds"] > 0 and filled["compile_seconds"] >= 0


def test_train_steps(bench_run):
  steps = bench_run[0]["train_step"]
  assert steps["renderer"]["batch"] == "2 frames" and steps["motion"]["batch"] == "2 x 8 frames"
  for step in steps.values():
    assert step["seconds"] > 0 and step["compile_seconds"] >= 0


def test_synthetic_batches_have_training_shapes(tiny):
  config, model = tiny
  assert synthetic_batch(STAGES["renderer"](config))["frames"].shape == (2, 1, 16, 16, 3)
  motion = synthetic_batch(STAGES["motion"](config))
  assert motion["latents"].shape == (2, 8, model.models.latent_dim)
  assert motion["audio"].shape == (2, (8 + 2 * model.models.audio_margin_frames) * 640)


def test_the_timed_step_is_the_training_loop_step(tiny, monkeypatch):
  """EMA update and frozen mask included: the step is built by the loop's own factory."""
  config, model = tiny
  built = []

  def spy(loss_fn, optimizer, state_shardings, batch_sharding, ema_decay):
    built.append((loss_fn, ema_decay))
    return make_train_step(loss_fn, optimizer, state_shardings, batch_sharding, ema_decay)

  make_train_step = bench_training.make_train_step
  monkeypatch.setattr(bench_training, "make_train_step", spy)
  timing, _ = bench_training.train_step_time(config, "motion", model.params, repeats=1)
  ((loss_fn, ema_decay),) = built
  assert loss_fn.__func__ is STAGES["motion"].loss and ema_decay == config.motion_train.ema_decay
  assert timing.seconds > 0


def test_kv_cache_and_recompute_samplers_agree_and_are_timed(bench_run):
  rows = bench_run[0]["samplers"]
  assert [r["frames"] for r in rows] == [12]
  for row in rows:
    assert row["kv_cache_seconds"] > 0 and row["recompute_seconds"] > 0
    assert row["recompute_over_kv_cache"] == pytest.approx(
      row["recompute_seconds"] / row["kv_cache_seconds"]
    )
    assert row["max_abs_difference"] < 1e-3  # both samplers computed the same latents


def test_report_states_the_machine_and_every_measurement(bench_run):
  results, printed = bench_run
  assert results["machine"] == {**describe_machine(), "date": results["machine"]["date"]}
  assert printed.startswith(format_report(results))
  for words in (
    "tiny model",
    "RTF",
    "frames/s",
    "first frame, from the first sample",
    "chunk latency, p95",
    "train step, renderer",
    "train step, motion",
    "KV cache, 0.48 s",
    "recompute, 0.48 s",
    results["machine"]["cpu"],
  ):
    assert words in printed


def test_bench_reports_a_missing_checkpoint(tmp_path, capsys):
  assert bench_main.main(["--checkpoint", str(tmp_path / "missing")]) == 2
  assert "does not exist" in capsys.readouterr().err
