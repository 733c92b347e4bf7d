"""Train step time of each stage at its configured batch size, on synthetic batches.

The step is the one the training loop runs (`jaxtalk.training.step.make_train_step`): the stage's
loss, value_and_grad, its optimizer with its frozen parameters masked, the EMA update, and the
donated state, on a one-device mesh. Batches are random data of the shapes the stage's data
pipeline produces; speed does not depend on their content.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.bench.timing import Timing, measure
from jaxtalk.parallel.mesh import make_mesh
from jaxtalk.parallel.sharding import batch_sharding, replicated
from jaxtalk.stages import STAGES
from jaxtalk.stages.stage import Stage
from jaxtalk.timebase import SAMPLES_PER_FRAME
from jaxtalk.training.optim import make_optimizer
from jaxtalk.training.state import TrainState
from jaxtalk.training.step import make_train_step


def synthetic_batch(stage: Stage, seed: int = 0) -> dict:
  """Random data shaped like the stage's training batches.

  renderer: uint8 target and reference frames; motion: the precomputed motion latents of a window
  and of its reference frame (stage 2 trains on latents, not frames), the window's audio and its
  acting controls (an emotion, pose amplitude and blink rate, all given).
  """
  rng = np.random.default_rng(seed)
  batch = stage.settings.batch_size
  if stage.name == "renderer":
    size = stage.models.image_size
    frames = lambda *lead: rng.integers(0, 256, lead + (size, size, 3), dtype=np.uint8)
    return {"frames": frames(batch, 1), "reference": frames(batch)}
  window, latent_dim = stage.settings.window_frames, stage.models.latent_dim
  samples = (window + 2 * stage.models.audio_margin_frames) * SAMPLES_PER_FRAME
  motion = stage.models.motion
  emotion = motion.emotions[0] if motion.emotions else None
  acting = motion.acting_layout.vector(emotion, 1.0, pose_amplitude=1.0, blink_rate=15.0)
  return {
    "latents": rng.standard_normal((batch, window, latent_dim), np.float32),
    "reference_latent": rng.standard_normal((batch, latent_dim), np.float32),
    "audio": rng.uniform(-0.3, 0.3, (batch, samples)).astype(np.float32),
    "acting": np.broadcast_to(acting, (batch, window, len(acting))).copy(),
  }


def batch_label(stage: Stage) -> str:
  """The batch size in words: frames for the renderer, windows of frames for motion."""
  if stage.name == "renderer":
    return f"{stage.settings.batch_size} frames"
  return f"{stage.settings.batch_size} x {stage.settings.window_frames} frames"


def train_step_time(config, stage_name: str, params: dict, repeats: int = 3) -> tuple[Timing, str]:
  """(seconds per optimizer step of the stage from `params` (all models'), the batch in words)."""
  stage = STAGES[stage_name](config)
  optimizer = make_optimizer(stage.settings, stage.is_frozen)
  mesh = make_mesh({}, devices=jax.devices()[:1])
  # Copies: the step donates (consumes) its state, and `params` belong to the caller.
  trained = {name: jax.tree.map(jnp.array, params[name]) for name in stage.trains}
  state = TrainState(
    step=jnp.zeros((), jnp.int32),
    params=trained,
    ema_params=jax.tree.map(jnp.array, trained),
    opt_state=optimizer.init(trained),
    rng=jax.random.key(0),
  )
  layout = batch_sharding(mesh)
  state_shardings = jax.tree.map(lambda _: replicated(mesh), state)
  step = make_train_step(stage.loss, optimizer, state_shardings, layout, stage.settings.ema_decay)
  batch = jax.device_put(synthetic_batch(stage), layout)
  holder = {"state": state}

  def one_step():
    holder["state"], _ = step(holder["state"], batch)
    return holder["state"]  # waiting for the updated state waits for the whole step

  timing, _ = measure(one_step, repeats)
  return timing, batch_label(stage)
