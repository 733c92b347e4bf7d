"""What a training stage is: one object that knows what it trains, from what, and how.

A stage is built once from the experiment config. It names the parameter groups it trains (the
rest of a bundle comes from other stages), builds their fresh parameters, computes its loss on a
batch, says which of its parameters stay frozen, and makes its dataset. The training loop
(`jaxtalk.training.loop`) runs any stage; `train.py`, the bundle export and the benchmark look
stages up in the one registry, `jaxtalk.stages.STAGES`.

Each stage trains in its own folder of the run's workdir, so the stages resume independently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import jax

from jaxtalk.data.clips import shard_paths
from jaxtalk.data.pipeline import window_dataset
from jaxtalk.errors import UserError
from jaxtalk.models.factory import Models
from jaxtalk.training import loop
from jaxtalk.training.settings import TrainSettings


class Stage:
  name: ClassVar[str]  # also the name of its config section `<name>_train` and of its folder
  trains: ClassVar[tuple[str, ...]]  # the parameter groups it trains and exports
  settings_type: ClassVar[type[TrainSettings]]
  data_seed_offset: ClassVar[int]  # added to config.seed, so stages draw different windows

  def __init__(self, config):
    self.config = config
    self.models = Models.from_config(config)
    section = f"{self.name}_train"
    self.settings = self.settings_type.from_section(config[section], section)

  def checkpoint_dir(self, run_dir) -> Path:
    return Path(run_dir) / self.name

  def init(self, rng: jax.Array) -> dict:
    """rng -> fresh parameters of the groups it trains, boxed with logical axis names."""
    return self.models.init(rng, self.trains)

  def loss(self, params: dict, batch: dict, rng: jax.Array) -> tuple[jax.Array, dict]:
    """(scalar loss, dict of scalar metrics) of a batch; `params` holds the groups it trains."""
    raise NotImplementedError

  def is_frozen(self, path: tuple[str, ...]) -> bool:
    """Whether the parameter at `path` (its dict keys) keeps its initial value."""
    del path
    return False

  def dataset(self, run_dir, shard_index: int, shard_count: int):
    """This host's batches (a grain dataset, so its position can be saved and restored)."""
    raise NotImplementedError

  def train(self, run_dir) -> Any:
    """Trains to `settings.num_steps`, resuming from its latest checkpoint in `run_dir`."""
    dataset = self.dataset(run_dir, jax.process_index(), jax.process_count())
    return loop.train(self, dataset, self.checkpoint_dir(run_dir))

  def train_paths(self) -> list[str]:
    if not self.config.data.train_dir:
      raise UserError("config.data.train_dir is not set; point it at a folder of clip shards")
    return shard_paths(self.config.data.train_dir, "train")

  def windows(
    self,
    window_frames: int,
    audio_margin_frames: int,
    shard_index,
    shard_count,
    with_frames: bool = True,
    acting=None,
  ):
    """This host's rows of the global batches of training windows (see
    `jaxtalk.data.pipeline.window_dataset`); each stage draws its own sequence of windows."""
    batch_size = self.settings.batch_size
    if batch_size % shard_count:
      raise UserError(
        f"{self.name}_train.batch_size {batch_size} (the global batch) does not split over "
        f"{shard_count} processes; make it a multiple of {shard_count}"
      )
    return window_dataset(
      self.train_paths(),
      window_frames=window_frames,
      audio_margin_frames=audio_margin_frames,
      batch_size=batch_size,
      seed=self.config.seed + self.data_seed_offset,
      shard_index=shard_index,
      shard_count=shard_count,
      windows_per_clip=self.config.data.windows_per_clip,
      with_frames=with_frames,
      acting=acting,
    )
