"""Config sections -> Flax modules. The one place that knows how a config names a model."""

from __future__ import annotations

import jax.numpy as jnp

from jaxtalk.models.motion_encoder import MotionEncoder
from jaxtalk.models.motion_transformer import MotionTransformer
from jaxtalk.models.renderer import Renderer


def compute_dtype(config):
  return jnp.dtype(config.compute_dtype)


def motion_encoder(config) -> MotionEncoder:
  return MotionEncoder(**config.motion_encoder.to_dict(), dtype=compute_dtype(config))


def renderer(config) -> Renderer:
  cfg = config.renderer.to_dict()
  cfg["channel_mults"] = tuple(cfg["channel_mults"])
  return Renderer(**cfg, dtype=compute_dtype(config))


def motion_transformer(config) -> MotionTransformer:
  return MotionTransformer(
    latent_dim=motion_encoder(config).latent_dim,
    **config.motion.to_dict(),
    dtype=compute_dtype(config),
  )
