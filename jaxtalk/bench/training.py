"""Train step time of each stage at its configured batch size, on synthetic batches.

The step is what the training loop runs, without the mesh: the stage's own loss, value_and_grad,
the stage's optimizer (clipped AdamW), and an in-place update (the state is donated). Batches are
random data of the shapes the data pipeline produces; speed does not depend on their content.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxtalk.bench.timing import Timing, measure
from jaxtalk.models import build
from jaxtalk.stages import motion_stage, renderer_stage
from jaxtalk.training.optim import make_optimizer

STAGES = {"renderer": renderer_stage, "motion": motion_stage}
# The models each stage trains; the rest of a bundle's parameters are not updated by it.
STAGE_MODELS = {"renderer": ("motion_encoder", "renderer"), "motion": ("audio_encoder", "motion")}


def synthetic_batch(config, stage: str, seed: int = 0) -> dict:
  """Random data shaped like `stage`'s training batches.

  renderer: uint8 target and reference frames; motion: the precomputed motion latents of a window
  and of its reference frame (stage 2 trains on latents, not frames), and the window's audio.
  """
  rng = np.random.default_rng(seed)
  if stage == "renderer":
    batch, size = config.renderer_train.batch_size, config.data.image_size
    frames = lambda *lead: rng.integers(0, 256, lead + (size, size, 3), dtype=np.uint8)
    return {"frames": frames(batch, 1), "reference": frames(batch)}
  train_cfg = config.motion_train
  batch, window = train_cfg.batch_size, train_cfg.window_frames
  latent_dim = build.motion_encoder(config).latent_dim
  spf = config.data.sample_rate // config.data.fps
  samples = (window + 2 * motion_stage.audio_margin_frames(config)) * spf
  return {
    "latents": rng.standard_normal((batch, window, latent_dim), np.float32),
    "reference_latent": rng.standard_normal((batch, latent_dim), np.float32),
    "audio": rng.uniform(-0.3, 0.3, (batch, samples)).astype(np.float32),
  }


def batch_label(config, stage: str) -> str:
  """The batch size of `stage` in words: frames for the renderer, windows of frames for motion."""
  if stage == "renderer":
    return f"{config.renderer_train.batch_size} frames"
  return f"{config.motion_train.batch_size} x {config.motion_train.window_frames} frames"


def train_step_time(config, stage: str, params, repeats: int = 3) -> Timing:
  """Seconds per optimizer step of `stage` ("renderer" or "motion") from `params` (all models')."""
  loss = STAGES[stage].loss_fn(config)
  optimizer = make_optimizer(getattr(config, f"{stage}_train"))

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, batch, rng):
    (value, _), grads = jax.value_and_grad(loss, has_aux=True)(params, batch, rng)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  # Copies: the step donates (consumes) its state, and `params` belong to the caller.
  trained = jax.tree.map(jnp.array, {name: params[name] for name in STAGE_MODELS[stage]})
  state = {"params": trained, "opt_state": optimizer.init(trained)}
  batch, rng = jax.device_put(synthetic_batch(config, stage)), jax.random.key(0)

  def one_step():
    state["params"], state["opt_state"], _ = step(state["params"], state["opt_state"], batch, rng)
    return state  # waiting for the updated state waits for the whole step

  timing, _ = measure(one_step, repeats)
  return timing
