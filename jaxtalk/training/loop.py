"""The training loop shared by both stages, top to bottom: setup, model, shard & transfer, data,
train loop, final save. A stage supplies only its init, loss, frozen parameters and dataset.

A run is resumable at any point: it restores the newest checkpoint in its workdir (parameters,
EMA, optimizer, step, RNG and data-iterator position) and continues as if never stopped. Ctrl-C
or SIGTERM (preemption) stops it at the next step boundary and saves first.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import flax.linen as nn
import jax

from jaxtalk.errors import UserError
from jaxtalk.parallel.mesh import make_mesh
from jaxtalk.parallel.sharding import batch_sharding, global_batch
from jaxtalk.training.checkpoint import Checkpointer
from jaxtalk.training.optim import make_optimizer
from jaxtalk.training.progress import ProgressLogger, say
from jaxtalk.training.settings import TrainSettings
from jaxtalk.training.state import TrainState, abstract_train_state, init_train_state
from jaxtalk.training.step import make_train_step


class _StopRequest:
  """Turns SIGINT/SIGTERM into a request to stop at the next step boundary.

  Between steps the state is complete and can be saved; an exception in the middle of a step
  could leave the donated state half-consumed. A second signal acts as usual (Ctrl-C twice
  interrupts at once). Python handlers can only be set from the main thread, and a multi-host
  run leaves SIGTERM to jax's distributed preemption notifier; then nothing is installed.
  """

  def __init__(self):
    self.signum: int | None = None
    self._previous: dict[int, Any] = {}

  def __enter__(self) -> _StopRequest:
    if threading.current_thread() is threading.main_thread() and jax.process_count() == 1:
      for signum in (signal.SIGINT, signal.SIGTERM):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def _handle(self, signum: int, _frame: Any) -> None:
    self.signum = signum
    signal.signal(signum, self._previous[signum])

  def __exit__(self, *_exc: Any) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def reraise(self) -> None:
    """Leaves the way the signal would have: KeyboardInterrupt, or exit status 143 for SIGTERM
    (also for a multi-host preemption, where the signal went to jax's notifier instead)."""
    if self.signum == signal.SIGINT:
      raise KeyboardInterrupt
    raise SystemExit(128 + signal.SIGTERM)


class TrainJob(Protocol):
  """What the loop needs of a training stage (`jaxtalk.stages.stage.Stage` is one)."""

  config: Any  # the experiment config: mesh, axis rules and seed; saved with every checkpoint
  settings: TrainSettings

  def init(self, rng: jax.Array) -> Any:
    """rng -> params, boxed with logical axis names (`nn.with_logical_partitioning`)."""

  def loss(self, params: Any, batch: Any, rng: jax.Array) -> tuple[jax.Array, dict]:
    """(scalar loss, dict of scalar metrics); params unboxed."""

  def is_frozen(self, path: tuple[str, ...]) -> bool:
    """Parameters for which this is true keep their initial values (see `make_optimizer`)."""


def train(job: TrainJob, dataset: Iterable[Any], workdir: str | Path) -> TrainState:
  """Trains `job` until `job.settings.num_steps` updates are applied, resuming from `workdir`.

  Args:
    job: what to train, and its settings.
    dataset: yields this host's batches (pytrees of numpy arrays, leading dim = batch). Its
      iterator must have get_state()/set_state() (any grain dataset does) so a resumed run
      continues from the same position. It must not run out before `num_steps`.
    workdir: where checkpoints/, tensorboard/ and metrics.jsonl go; rerunning with the same
      workdir resumes.

  Returns:
    The final TrainState. If stopped by Ctrl-C or SIGTERM it saves a checkpoint and then raises
    KeyboardInterrupt or SystemExit(143) instead.
  """
  settings, config = job.settings, job.config
  config_dict = config.to_dict()
  num_steps = settings.num_steps
  # ------------------------------------------------------------------------------------ setup
  workdir = Path(workdir)
  mesh = make_mesh(config.mesh)
  rules = tuple(config.axis_rules)
  checkpointer = Checkpointer(workdir, save_interval=settings.checkpoint_every)
  say(
    f"{jax.process_count()} process(es), {jax.device_count()} {jax.devices()[0].platform} "
    f"device(s), mesh {dict(mesh.shape)}; workdir {workdir}"
  )

  # ------------------------------------------------------------------------------------ model
  optimizer = make_optimizer(settings, job.is_frozen)
  rng = jax.random.key(config.seed)
  abstract_state, state_shardings = abstract_train_state(job.init, optimizer, mesh, rules, rng)
  num_params = sum(math.prod(p.shape) for p in jax.tree.leaves(abstract_state.params))
  say(f"model: {num_params:,} parameters")

  # ---------------------------------------------------------------------- shard & transfer
  # Restore straight into the target shardings, or initialise under jit with those shardings:
  # either way no parameter is ever materialised whole on one device.
  restored = checkpointer.restore_latest(abstract_state, state_shardings)
  if restored is None:
    state = init_train_state(job.init, optimizer, state_shardings, rng)
    data_state = None
  else:
    state, data_state = restored
  start_step = int(jax.device_get(state.step))
  if restored is not None:
    say(f"resumed from step {start_step} ({checkpointer.directory / str(start_step)})")

  # ------------------------------------------------------------------------------------- data
  data_iter = iter(dataset)
  if data_state is not None:
    data_iter.set_state(data_state)
  batch_layout = batch_sharding(mesh)

  # ------------------------------------------------------------------------------- train loop
  train_step = make_train_step(
    job.loss, optimizer, state_shardings, batch_layout, settings.ema_decay
  )
  logger = ProgressLogger(workdir, num_steps, settings.log_every)
  step = start_step
  exhausted = stopped = False
  try:
    # The mesh and rules contexts let model code constrain activations by logical name
    # (`nn.with_logical_constraint`) when the step is traced.
    with _StopRequest() as stop, jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      while step < num_steps:
        try:
          local_batch = next(data_iter)
        except StopIteration:
          exhausted = True
          break
        state, metrics = train_step(state, global_batch(local_batch, batch_layout))
        step += 1
        logger.log(step, metrics)
        if checkpointer.should_save(step):
          checkpointer.save(step, state, data_iter.get_state(), config_dict)
        stopped = _should_stop(stop, checkpointer, step)
        if stopped:
          break

    # ----------------------------------------------------------------------------- final save
    logger.flush()
    if checkpointer.save(step, state, data_iter.get_state(), config_dict):
      say(f"saved checkpoint at step {step}")
  finally:
    logger.close()
    checkpointer.close()  # waits for background writes, so the last save is complete on exit
  if exhausted:
    raise UserError(
      f"the dataset ran out after {step} of {num_steps} steps; make it repeat "
      f"(grain: .repeat()) or lower num_steps"
    )
  if stopped:
    say(f"stopped at step {step}; run the same command again to resume")
    stop.reraise()
  return state


def _should_stop(stop: _StopRequest, checkpointer: Checkpointer, step: int) -> bool:
  if jax.process_count() > 1:
    # Every host must stop at the same step or the next collective hangs; jax's distributed
    # preemption notifier makes all hosts agree on one.
    return checkpointer.reached_preemption(step)
  return stop.signum is not None
