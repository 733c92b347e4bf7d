"""Training infrastructure on a toy model: sharded step parity, resume, checkpoints, logging."""

import dataclasses
import json
import os
import shutil
import signal
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from tensorboardX.proto import event_pb2
from toy_job import (
  CONFIG_DICT,
  EMA_DECAY,
  MESH_8,
  NOTHING_FROZEN,
  RULES,
  SETTINGS,
  ToyJob,
  toy_dataset,
  toy_init_fn,
  toy_loss,
)

from jaxtalk.errors import UserError
from jaxtalk.parallel.mesh import make_mesh
from jaxtalk.parallel.sharding import batch_sharding, global_batch
from jaxtalk.training.checkpoint import Checkpointer, load_params, read_config
from jaxtalk.training.loop import train
from jaxtalk.training.optim import ema_update, make_optimizer
from jaxtalk.training.progress import ProgressLogger, format_duration
from jaxtalk.training.state import abstract_train_state, init_train_state
from jaxtalk.training.step import make_train_step


def _batches(n):
  iterator = iter(toy_dataset())
  return [next(iterator) for _ in range(n)]


def _assert_trees_close(a, b, atol):
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol), a, b
  )


# ------------------------------------------------------------------------------- optimizer


def test_weight_decay_skips_biases_and_norm_scales():
  cfg = dataclasses.replace(SETTINGS, warmup_steps=0)
  optimizer = make_optimizer(cfg, NOTHING_FROZEN)
  params = {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3), "scale": jnp.ones(3)}
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = jax.jit(optimizer.update)(zero_grads, optimizer.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -cfg.learning_rate * cfg.weight_decay, rtol=1e-6)
  np.testing.assert_array_equal(updates["bias"], 0.0)
  np.testing.assert_array_equal(updates["scale"], 0.0)


def test_ema_update():
  ema = ema_update({"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([3.0, 0.0])}, decay=0.75)
  np.testing.assert_allclose(ema["w"], [1.5, 1.5])


# ---------------------------------------------------------------- sharded step == one device


def _run_steps(mesh, batches):
  optimizer = make_optimizer(SETTINGS, NOTHING_FROZEN)
  rng = jax.random.key(0)
  _, shardings = abstract_train_state(toy_init_fn(), optimizer, mesh, RULES, rng)
  state = init_train_state(toy_init_fn(), optimizer, shardings, rng)
  layout = batch_sharding(mesh)
  step = make_train_step(toy_loss, optimizer, shardings, layout, EMA_DECAY)
  metrics = []
  for batch in batches:
    state, m = step(state, global_batch(batch, layout))
    metrics.append(jax.device_get(m))
  return state, shardings, metrics


@pytest.fixture(scope="module")
def sharded_and_single():
  # Six steps: the 8-device run is also the uninterrupted reference for the resume test.
  batches = _batches(6)
  sharded = _run_steps(make_mesh(MESH_8), batches)
  single = _run_steps(make_mesh({"data": 1}, devices=jax.devices()[:1]), batches)
  return sharded, single, batches


def test_state_is_sharded_by_the_rules(sharded_and_single):
  (state, shardings, _), _, _ = sharded_and_single
  assert state.params["Dense_0"]["kernel"].sharding.spec == P("fsdp", "tensor")
  assert state.ema_params["Dense_0"]["bias"].sharding.spec == P("tensor")
  # multi_transform(train: chain(clip, inject_hyperparams(adamw)), frozen: set_to_zero)
  adam_mu = state.opt_state.inner_states["train"].inner_state[1].inner_state[0].mu
  assert adam_mu["Dense_1"]["kernel"].sharding.spec == P("tensor", "fsdp")
  assert state.step.sharding.spec == P()
  assert shardings.params["Dense_0"]["kernel"].spec == P("fsdp", "tensor")


def test_sharded_step_equals_single_device_step(sharded_and_single):
  (state8, _, metrics8), (state1, _, metrics1), _ = sharded_and_single
  for m8, m1 in zip(metrics8, metrics1):
    np.testing.assert_allclose(m8["loss"], m1["loss"], atol=1e-5)
    np.testing.assert_allclose(m8["grad_norm"], m1["grad_norm"], atol=1e-5)
  _assert_trees_close(state8.params, state1.params, atol=1e-5)
  _assert_trees_close(state8.ema_params, state1.ema_params, atol=1e-5)
  assert int(state8.step) == int(state1.step) == 6


def test_step_metrics(sharded_and_single):
  (_, _, metrics), _, _ = sharded_and_single
  assert set(metrics[0]) == {"loss", "mse", "grad_norm", "learning_rate"}
  # Warmup over 2 steps from 0: the updates used learning rates 0, lr/2, then lr (peak).
  lr = SETTINGS.learning_rate
  np.testing.assert_allclose(
    [m["learning_rate"] for m in metrics[:3]], [0.0, lr / 2, lr], rtol=1e-5
  )
  assert metrics[-1]["loss"] < metrics[0]["loss"]


# --------------------------------------------------------------------- loop, interrupt, resume


class _CtrlCAfter:
  """Iterates over a dataset and sends this process SIGINT when batch `n` is taken, as a
  Ctrl-C in the middle of a run would."""

  def __init__(self, dataset, n):
    self._dataset, self._n = dataset, n

  def __iter__(self):
    return _CtrlCIterator(iter(self._dataset), self._n)


class _CtrlCIterator:
  def __init__(self, iterator, n):
    self._iterator, self._n, self._taken = iterator, n, 0

  def __next__(self):
    batch = next(self._iterator)
    self._taken += 1
    if self._taken == self._n:
      os.kill(os.getpid(), signal.SIGINT)
    return batch

  def get_state(self):
    return self._iterator.get_state()

  def set_state(self, state):
    self._iterator.set_state(state)


def _train(workdir, dataset, num_steps=6):
  return train(ToyJob(num_steps), dataset, workdir)


def _losses(workdir):
  with open(workdir / "metrics.jsonl") as f:
    return {r["step"]: r["loss"] for r in map(json.loads, f)}


@pytest.fixture(scope="module")
def interrupted_then_resumed(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("resumed")
  with pytest.raises(KeyboardInterrupt):
    _train(workdir, _CtrlCAfter(toy_dataset(), 3))
  steps_after_interrupt = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir())
  return workdir, steps_after_interrupt, _train(workdir, toy_dataset())


def test_interrupt_saves_and_resume_continues_identically(
  sharded_and_single, interrupted_then_resumed
):
  (straight_state, _, straight_metrics), _, _ = sharded_and_single  # six uninterrupted steps
  workdir, steps_after_interrupt, resumed_state = interrupted_then_resumed
  assert steps_after_interrupt == [3]
  resumed_losses = _losses(workdir)
  assert sorted(resumed_losses) == [1, 2, 3, 4, 5, 6]
  # Same data order and RNG after the resume: the losses match to float rounding.
  np.testing.assert_allclose(
    [resumed_losses[s] for s in range(1, 7)], [m["loss"] for m in straight_metrics], rtol=1e-6
  )
  _assert_trees_close(resumed_state.params, straight_state.params, atol=1e-6)
  _assert_trees_close(resumed_state.ema_params, straight_state.ema_params, atol=1e-6)
  assert int(resumed_state.step) == 6
  assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [3, 4, 6]


def test_finished_run_resumes_as_done(interrupted_then_resumed):
  workdir, _, state = interrupted_then_resumed
  again = _train(workdir, toy_dataset())
  assert int(again.step) == 6
  _assert_trees_close(again.params, state.params, atol=0)


# ------------------------------------------------------------------------------ checkpoints


def _abstract(hidden, mesh):
  return abstract_train_state(
    toy_init_fn(hidden), make_optimizer(SETTINGS, NOTHING_FROZEN), mesh, RULES, jax.random.key(0)
  )


def test_load_params_and_config_for_inference(interrupted_then_resumed):
  workdir, _, state = interrupted_then_resumed
  abstract_params = jax.eval_shape(toy_init_fn(), jax.random.key(0))  # boxed, as models give
  for path in (workdir, workdir / "checkpoints", workdir / "checkpoints" / "6"):
    ema = load_params(path, abstract_params)
    _assert_trees_close(ema, state.ema_params, atol=0)
  raw = load_params(workdir, abstract_params, use_ema=False)
  _assert_trees_close(raw, state.params, atol=0)
  assert raw["Dense_0"]["kernel"].sharding.device_set == {jax.devices("cpu")[0]}
  assert read_config(workdir) == json.loads(json.dumps(CONFIG_DICT))  # as JSON stores it


def test_restore_into_another_mesh(interrupted_then_resumed):
  workdir, _, state = interrupted_then_resumed
  mesh = make_mesh({"data": 1, "tensor": 2}, devices=jax.devices()[:2])
  checkpointer = Checkpointer(workdir)
  restored, data_state = checkpointer.restore_latest(*_abstract(16, mesh))
  checkpointer.close()
  assert restored.params["Dense_0"]["kernel"].sharding.mesh == mesh
  assert restored.params["Dense_0"]["kernel"].sharding.spec == P("fsdp", "tensor")
  _assert_trees_close(
    (restored.params, restored.ema_params, restored.opt_state, restored.step),
    (state.params, state.ema_params, state.opt_state, state.step),
    atol=0,
  )
  np.testing.assert_array_equal(jax.random.key_data(restored.rng), jax.random.key_data(state.rng))
  assert data_state == {"next_index": 6}  # six batches consumed


def test_config_mismatch_names_the_parameter(interrupted_then_resumed):
  workdir, _, _ = interrupted_then_resumed
  mesh = make_mesh(MESH_8)
  checkpointer = Checkpointer(workdir)
  with pytest.raises(
    UserError,
    match=r"params/Dense_0/bias has shape \(16,\) there but "
    r"\(32,\) here; use the config it was trained with",
  ):
    checkpointer.restore_latest(*_abstract(32, mesh))
  checkpointer.close()
  with pytest.raises(UserError, match=r"ema_params/Dense_0/bias has shape"):
    load_params(workdir, jax.eval_shape(toy_init_fn(32), jax.random.key(0)))


def test_corrupt_checkpoint_is_a_user_error(interrupted_then_resumed, tmp_path):
  workdir, _, _ = interrupted_then_resumed
  copy = tmp_path / "checkpoints"
  shutil.copytree(workdir / "checkpoints", copy)
  # The state's tree metadata, cut short as by a disk filling up. (Truncated array files fail the
  # same way, but tensorstore then leaves callbacks behind that warn at a random later test.)
  with open(copy / "6" / "state" / "_METADATA", "r+b") as f:
    f.truncate(20)
  checkpointer = Checkpointer(tmp_path)
  with pytest.raises(UserError, match="corrupt or truncated"):
    checkpointer.restore_latest(*_abstract(16, make_mesh(MESH_8)))
  checkpointer.close()


def test_missing_or_foreign_directory_is_a_user_error(tmp_path):
  abstract_params = jax.eval_shape(toy_init_fn(), jax.random.key(0))
  with pytest.raises(UserError, match="does not exist"):
    load_params(tmp_path / "nowhere", abstract_params)
  (tmp_path / "photos").mkdir()
  with pytest.raises(UserError, match="not a jaxtalk checkpoint"):
    read_config(tmp_path / "photos")


# --------------------------------------------------------------------------------- progress


def _tensorboard_scalars(logdir):
  """{tag: [(step, value)]} read from TFRecord event files (length, crc, Event proto, crc)."""
  scalars = {}
  for path in sorted(logdir.glob("events.out.tfevents.*")):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset : offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  return scalars


def test_progress_logger_writes_console_jsonl_and_tensorboard(tmp_path, capsys):
  logger = ProgressLogger(tmp_path, num_steps=5, log_every=2)
  for step in range(1, 6):
    logger.log(step, {"loss": jnp.float32(step), "grad_norm": jnp.float32(10 * step)})
  logger.close()

  lines = capsys.readouterr().out.strip().splitlines()
  assert lines[0] == "step 1/5 | loss 1.0000"  # the compile step: no rate yet
  assert [line.split(" | ")[0] for line in lines] == [
    "step 1/5",
    "step 2/5",
    "step 4/5",
    "step 5/5",
  ]
  assert lines[2].startswith("step 4/5 | loss 3.5000 | ") and " steps/s | ETA " in lines[2]

  with open(tmp_path / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  # Each record averages the steps since the previous one.
  assert [(r["step"], r["loss"]) for r in records] == [(1, 1.0), (2, 2.0), (4, 3.5), (5, 5.0)]
  scalars = _tensorboard_scalars(tmp_path / "tensorboard")
  assert scalars["loss"] == [(1, 1.0), (2, 2.0), (4, 3.5), (5, 5.0)]
  assert scalars["grad_norm"][-1] == (5, 50.0)


def test_format_duration():
  assert [format_duration(s) for s in (41.2, 588, 7380)] == ["41s", "9m48s", "2h03m"]
