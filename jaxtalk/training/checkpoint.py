"""Checkpoints: train state, data-iterator position and config saved together, asynchronously.

Layout (orbax CheckpointManager, one folder per step):

    <workdir>/checkpoints/<step>/state    params, EMA params, optimizer state, step, RNG (arrays)
                                /data     every process's data-iterator state (JSON), so a resumed
                                          run sees the batches it would have seen without the
                                          interruption
                                /config   the experiment config the run was started with (JSON)
                                /meta     {"format": "jaxtalk", "version": FORMAT_VERSION, ...}

Every process of a multi-host run saves and restores together: each writes its shards of the
arrays, process 0 the JSON items. Orbax writes each step into a temporary folder and renames it when
complete, so a run killed in the middle of a save leaves the previous checkpoint intact. Arrays restore straight into any
sharding: a checkpoint written on a pod can be resumed on another mesh or loaded on one CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

import jaxtalk
from jaxtalk.errors import UserError
from jaxtalk.parallel.distributed import gather_from_processes
from jaxtalk.parallel.sharding import strip_partitioning

# 2: the data item holds the iterator state of every process (1: of the only one).
FORMAT_VERSION = 2


def _item_handlers(state_handler: ocp.CheckpointHandler) -> dict[str, ocp.CheckpointHandler]:
  # Declared up front so that a fresh process can read metadata before its first restore.
  json_handler = ocp.JsonCheckpointHandler
  return {
    "state": state_handler,
    "data": json_handler(),
    "config": json_handler(),
    "meta": json_handler(),
  }


def _meta() -> dict[str, Any]:
  return {
    "format": "jaxtalk",
    "version": FORMAT_VERSION,
    "jaxtalk_version": jaxtalk.__version__,
    "jax_version": jax.__version__,
  }


class Checkpointer:
  """Saves and restores the training checkpoints of a run, in `<workdir>/checkpoints`."""

  def __init__(
    self, workdir: str | epath.PathLike, *, max_to_keep: int = 3, save_interval: int = 1000
  ):
    self.directory = epath.Path(workdir).absolute() / "checkpoints"
    self.save_interval = save_interval
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    self._manager = ocp.CheckpointManager(
      self.directory, options=options, item_handlers=_item_handlers(ocp.StandardCheckpointHandler())
    )

  def should_save(self, step: int) -> bool:
    """Whether `step` is on the save interval (the loop also saves at the end and on interrupt)."""
    return step % self.save_interval == 0

  def reached_preemption(self, step: int) -> bool:
    """Multi-host: whether all hosts have agreed to stop at `step` because of a preemption."""
    return self._manager.reached_preemption(step)

  def save(self, step: int, state: Any, data_state: dict[str, Any], config: dict[str, Any]) -> bool:
    """Starts saving `state` and this process's `data_state` (returns once arrays are copied off
    the device; files are written in the background). Every process calls it. Returns False if
    `step` is already saved, e.g. the final save of a run whose last step was also on the save
    interval."""
    if step in self._manager.all_steps():
      return False
    data_states = gather_from_processes(data_state)
    return self._manager.save(
      step,
      force=True,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave({"processes": data_states}),
        config=ocp.args.JsonSave(config),
        meta=ocp.args.JsonSave(_meta()),
      ),
    )

  def restore_latest(
    self, abstract_state: Any, state_shardings: Any
  ) -> tuple[Any, dict[str, Any]] | None:
    """(state, this process's data_state) of the newest checkpoint laid out as
    `state_shardings`, or None if there is none yet. `abstract_state` gives structure, shapes
    and dtypes (jax.eval_shape)."""
    self._manager.wait_until_finished()
    step = self._manager.latest_step()
    if step is None:
      return None
    step_dir = self.directory / str(step)
    version = _check_format(self._manager, step, step_dir)
    _check_shapes(_stored_tree(self._manager, step, step_dir), abstract_state, step_dir)
    target = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract_state,
      state_shardings,
    )
    restored = _restore(
      self._manager,
      step,
      step_dir,
      ocp.args.Composite(state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()),
    )
    data_states = restored.data["processes"] if version >= 2 else [restored.data]
    if len(data_states) != jax.process_count():
      raise UserError(
        f"checkpoint {step_dir} was saved by {len(data_states)} process(es), this run has "
        f"{jax.process_count()}; resume with {len(data_states)} (each resumes its own data position)"
      )
    return restored.state, data_states[jax.process_index()]

  def close(self) -> None:
    self._manager.close()


def load_params(
  checkpoint_dir: str | epath.PathLike, abstract_params: Any, *, use_ema: bool = True
) -> Any:
  """Loads only the (EMA) parameters of a checkpoint onto this process's first CPU device.

  In a multi-process run every process must call it (orbax restores collectively).

  Args:
    checkpoint_dir: a training workdir, its `checkpoints` folder (the newest step is used), or
      one `checkpoints/<step>` folder.
    abstract_params: the shapes of the parameter groups to load, a dict of group name -> tree
      (e.g. `Models.abstract_params(groups)`); boxes are allowed and dropped. Groups the
      checkpoint holds beyond these are left unread; the groups asked for must match exactly.
    use_ema: the EMA weights (what sampling should use) rather than the raw trained weights.
  """
  key = "ema_params" if use_ema else "params"
  abstract_params = strip_partitioning(abstract_params)
  cpu = jax.sharding.SingleDeviceSharding(jax.local_devices(backend="cpu")[0])
  target = {
    key: jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=cpu), abstract_params
    )
  }
  with _read_only(checkpoint_dir) as (manager, step, step_dir):
    stored = _stored_tree(manager, step, step_dir).get(key, {})
    asked = {group: tree for group, tree in stored.items() if group in abstract_params}
    _check_shapes(asked, abstract_params, step_dir, prefix=key)
    restored = _restore(
      manager,
      step,
      step_dir,
      ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
          item=target,
          restore_args=ocp.checkpoint_utils.construct_restore_args(target),
          partial_restore=True,
        )
      ),
    )
  return restored.state[key]


def read_config(checkpoint_dir: str | epath.PathLike) -> dict[str, Any]:
  """The config (a plain dict, tuples as lists) that the checkpoint's run was started with."""
  with _read_only(checkpoint_dir) as (manager, step, step_dir):
    return _restore(
      manager, step, step_dir, ocp.args.Composite(config=ocp.args.JsonRestore())
    ).config


@contextlib.contextmanager
def _read_only(
  path: str | epath.PathLike,
) -> Iterator[tuple[ocp.CheckpointManager, int, epath.Path]]:
  """(manager, step, step folder) for a workdir, a checkpoints folder or a step folder."""
  path = epath.Path(path).absolute()
  if not path.is_dir():
    raise UserError(
      f"checkpoint directory {path} does not exist; pass a training workdir or "
      f"one of its checkpoints/<step> folders"
    )
  if (path / "checkpoints").is_dir():
    path = path / "checkpoints"
  step = None
  if path.name.isdigit() and (path / "meta").is_dir():
    path, step = path.parent, int(path.name)
  # Not `read_only=True`: that logs a warning on every load; this manager simply never saves.
  options = ocp.CheckpointManagerOptions(create=False, enable_async_checkpointing=False)
  # The PyTree handler reads what StandardSave wrote and can restore a subtree (the params only).
  manager = ocp.CheckpointManager(
    path, options=options, item_handlers=_item_handlers(ocp.PyTreeCheckpointHandler())
  )
  try:
    if step is None:
      step = manager.latest_step()
    if step is None or step not in manager.all_steps():
      raise UserError(
        f"{path} is not a jaxtalk checkpoint (no complete step folders in it); "
        f"pass a training workdir or one of its checkpoints/<step> folders"
      )
    step_dir = path / str(step)
    _check_format(manager, step, step_dir)
    yield manager, step, step_dir
  finally:
    manager.close()


def _check_format(manager: ocp.CheckpointManager, step: int, step_dir: epath.Path) -> int:
  """The checkpoint's format version, or a UserError if it is not one this jaxtalk reads."""
  if not (step_dir / "meta").is_dir():
    raise UserError(
      f"{step_dir} is not a jaxtalk checkpoint (it has no 'meta' item); pass a "
      f"checkpoint written by jaxtalk training"
    )
  meta = _restore(manager, step, step_dir, ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
  if meta.get("format") != "jaxtalk":
    raise UserError(f"{step_dir} is not a jaxtalk checkpoint; pass one written by jaxtalk training")
  if meta.get("version", 0) > FORMAT_VERSION:
    raise UserError(
      f"{step_dir} was written by a newer jaxtalk (format {meta['version']}, this "
      f"one reads up to {FORMAT_VERSION}); upgrade jaxtalk"
    )
  return meta.get("version", 0)


def _restore(
  manager: ocp.CheckpointManager, step: int, step_dir: epath.Path, args: ocp.args.Composite
) -> Any:
  # Orbax and tensorstore report damaged files with assorted exception types (ValueError,
  # FileNotFoundError, JSON errors...); to the user they all mean the same thing.
  try:
    return manager.restore(step, args=args)
  except Exception as e:  # pylint: disable=broad-except
    cause = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    raise UserError(
      f"checkpoint {step_dir} is corrupt or truncated ({cause}); delete that folder "
      f"to fall back to an earlier step, or retrain"
    ) from e


def _stored_tree(manager: ocp.CheckpointManager, step: int, step_dir: epath.Path) -> Any:
  """Nested dicts/lists of array metadata (shape, dtype) of the saved state, read without data."""
  try:
    return manager.item_metadata(step)["state"].tree
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(
      f"checkpoint {step_dir} is corrupt or truncated (cannot read its metadata: "
      f"{type(e).__name__}); delete that folder to fall back to an earlier step, or "
      f"retrain"
    ) from e


def _path_name(path: tuple[Any, ...]) -> str:
  parts = []
  for key in path:
    for attr in ("name", "key", "idx"):  # GetAttrKey, DictKey, SequenceKey
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return "/".join(parts)


def _stored_shape(leaf: Any) -> tuple[int, ...]:
  # Typed PRNG keys are saved as their raw uint32 key data.
  if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
    return tuple(jax.eval_shape(jax.random.key_data, leaf).shape)
  return tuple(leaf.shape)


def _check_shapes(
  stored_tree: Any, abstract_tree: Any, step_dir: epath.Path, prefix: str = ""
) -> None:
  """Raises a UserError naming the first array whose presence or shape differs.

  A checkpoint from another config would otherwise fail deep inside orbax, or (with padding)
  load silently wrong weights.
  """
  stored = {
    _path_name(path): tuple(leaf.shape)
    for path, leaf in jax.tree_util.tree_flatten_with_path(stored_tree)[0]
  }
  expected = {
    _path_name(path): _stored_shape(leaf)
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_tree)[0]
  }
  advice = (
    f"use the config it was trained with (saved in {step_dir / 'config'}, read it with "
    f"jaxtalk.training.checkpoint.read_config) or a fresh workdir"
  )
  for name, shape in expected.items():
    shown = f"{prefix}/{name}" if prefix else name
    if name not in stored:
      raise UserError(
        f"checkpoint {step_dir} was trained with a different config: it has no {shown}; {advice}"
      )
    if stored[name] != shape:
      raise UserError(
        f"checkpoint {step_dir} was trained with a different config: {shown} has "
        f"shape {stored[name]} there but {shape} here; {advice}"
      )
  extra = sorted(set(stored) - set(expected))
  if extra:
    shown = f"{prefix}/{extra[0]}" if prefix else extra[0]
    raise UserError(
      f"checkpoint {step_dir} was trained with a different config: it has {shown} "
      f"which this model lacks; {advice}"
    )
