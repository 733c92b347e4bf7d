"""Pieces both stages share: image scaling, data paths, workdir layout, running the loop."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp

from jaxtalk.data.clips import shard_paths
from jaxtalk.training import loop

STAGES = ("renderer", "motion")


def image_to_model(images):
  """uint8 [0, 255] -> float32 [-1, 1], the scale both image models work in."""
  return jnp.asarray(images, jnp.float32) / 127.5 - 1.0


def model_to_image(images):
  """float [-1, 1] -> uint8, clipping what the sampler overshoots."""
  return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def stage_dir(workdir, stage: str) -> Path:
  """Each stage trains in its own subfolder of the run's workdir, so both resume independently."""
  return Path(workdir) / stage


def train_paths(config):
  return shard_paths(config.data.train_dir, "train")


def run_stage(config, workdir, stage: str, init_fn, loss_fn, dataset, frozen=None):
  """Runs the shared training loop with the stage's section of the config; `frozen` as in `loop.train`."""
  train_cfg = getattr(config, f"{stage}_train")
  return loop.train(
    workdir=stage_dir(workdir, stage),
    config_dict=config.to_dict(),
    init_fn=init_fn,
    loss_fn=loss_fn,
    dataset=dataset,
    num_steps=train_cfg.num_steps,
    optimizer_cfg=train_cfg,
    mesh_cfg=config.mesh.to_dict(),
    rules=tuple(config.axis_rules),
    seed=config.seed,
    log_every=train_cfg.log_every,
    checkpoint_every=train_cfg.checkpoint_every,
    ema_decay=train_cfg.ema_decay,
    frozen=frozen,
  )
