"""Stage 1: motion encoder + rendering diffusion model, trained jointly with flow matching.

From one clip the batch holds a target frame and a reference frame. The motion encoder reads the
target (colour-jittered if `appearance_jitter` > 0) and emits a few motion tokens; the renderer
learns to denoise the target given the reference and those tokens.
The renderer predicts the clean frame: with 4x4 patches and 32 channels at the top level, the
network is too narrow to carry a noise image, which a velocity prediction would need.

The loss is what makes the motion latent carry motion. Most of a target frame is the reference
again, and near t = 1 the noisy target shows the rest, so a renderer can score well while ignoring
the motion tokens, and then the encoder gets no signal to learn from (measured on SynthTalk: with the
velocity loss, whose 1 / (1 - t)^2 weight makes near-clean samples dominate, not even ground-truth
motion fed in place of the tokens was used after 600 steps). So the loss is the squared error of the
clean-frame prediction itself (no 1 / (1 - t)^2), flow times lean towards noise (logit-normal with
a negative mean, as in Li & He 2025), and pixels where target and reference differ, the pixels
only the motion can explain, weigh `change_boost` times more.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxtalk.diffusion import flow
from jaxtalk.models.factory import to_model_image
from jaxtalk.models.warp import warp
from jaxtalk.stages.stage import Stage
from jaxtalk.training.settings import TrainSettings


def appearance_jitter(images, rng, strength: float):
  """Per-example random channel gains and brightness offset: changes look, not motion."""
  if not strength:
    return images
  gain_rng, offset_rng = jax.random.split(rng)
  batch = images.shape[0]
  gains = 1.0 + strength * jax.random.uniform(gain_rng, (batch, 1, 1, 3), minval=-1, maxval=1)
  offset = strength * jax.random.uniform(offset_rng, (batch, 1, 1, 1), minval=-1, maxval=1)
  return jnp.clip(images * gains + offset, -1.0, 1.0)


# Pixels whose mean channel difference from the reference exceeds this (in [-1, 1] image scale,
# about 10 grey levels) count as changed: above uint8 noise and anti-aliasing, below any real motion.
CHANGE_THRESHOLD = 0.08


def change_weights(target, reference, boost: float):
  """Per-pixel loss weights [B, H, W, 1]: 1 + boost where the target differs from the reference.

  The changed region is grown by one pixel so that the edges of a moved feature count fully.
  """
  difference = jnp.mean(jnp.abs(target - reference), axis=-1, keepdims=True)
  changed = (difference > CHANGE_THRESHOLD).astype(jnp.float32)
  changed = jax.lax.reduce_window(changed, 0.0, jax.lax.max, (1, 3, 3, 1), (1, 1, 1, 1), "SAME")
  return 1.0 + boost * changed


# Scales of the warp's error: the image itself and its 2x, 4x and 8x box-averaged versions.
WARP_LOSS_SCALES = (1, 2, 4, 8)


def pyramid_l1(image, target, scales=WARP_LOSS_SCALES):
  """Mean over `scales` of the L1 error between `image` and `target` box-averaged by each scale.

  A bilinear warp's gradient sees one pixel around each sample, so at full resolution a flat
  feature that the field puts three pixels off gives it no direction to move in; averaged over
  8x8 blocks, the same error slopes towards the right place (tests/test_warp.py). On SynthTalk's
  textured faces it made no measurable difference: a motion field conditioned on the true motion
  parameters, 600 steps on 48 training clips, warped at 23.75 dB with it and 23.79 dB with the
  full-resolution L1 alone (identity 20.86 dB). The demo was trained with it.
  """
  errors = []
  for scale in scales:
    window = (1, scale, scale, 1)
    difference = jax.lax.reduce_window(image - target, 0.0, jax.lax.add, window, window, "VALID")
    errors.append(jnp.mean(jnp.abs(difference)) / scale**2)
  return sum(errors) / len(errors)


# The largest random similarity `random_similarity` applies: a shift of 1/32 of the side (4 px at
# 128 px, about SynthTalk's head sway), a turn and a zoom of a head's size.
SIMILARITY_SHIFT = 1 / 32
SIMILARITY_DEGREES = 5.0
SIMILARITY_ZOOM = 0.05


def similarity_flow(size: int, shift, angle, zoom):
  """Backward-warp flow [B, S, S, 2] (see `warp.warp`) that moves images of side `size` by
  `shift` [B, 2] pixels, turns them by `angle` [B] radians and scales them by `zoom` [B] about
  their centre."""
  ys, xs = jnp.meshgrid(jnp.arange(size), jnp.arange(size), indexing="ij")
  centre = (size - 1) / 2
  x, y = xs[None] - centre - shift[:, 0, None, None], ys[None] - centre - shift[:, 1, None, None]
  cos, sin = (jnp.cos(angle) / zoom)[:, None, None], (jnp.sin(angle) / zoom)[:, None, None]
  source_x, source_y = cos * x + sin * y + centre, -sin * x + cos * y + centre
  return jnp.stack([source_x - xs[None], source_y - ys[None]], axis=-1)


def random_similarity(images, rng, probability: float):
  """Each image, with `probability`, moved, turned and zoomed by a random small similarity.

  A target moved so has a pose the reference does not: the warp can only follow it if the motion
  encoder puts the pose into the latent. SynthTalk's head motion alone teaches it slowly
  (measured at 600 steps of the demo's stage 1: the warp's PSNR gain over the unwarped portrait
  +0.53 dB without, +0.84 dB with; README, "Results").
  """
  if not probability:
    return images
  batch, size = images.shape[:2]
  on_rng, shift_rng, angle_rng, zoom_rng = jax.random.split(rng, 4)
  on = jax.random.bernoulli(on_rng, probability, (batch,)).astype(jnp.float32)
  uniform = lambda key, shape: jax.random.uniform(key, shape, minval=-1, maxval=1)
  shift = SIMILARITY_SHIFT * size * uniform(shift_rng, (batch, 2)) * on[:, None]
  angle = jnp.deg2rad(SIMILARITY_DEGREES) * uniform(angle_rng, (batch,)) * on
  zoom = jnp.exp(SIMILARITY_ZOOM * uniform(zoom_rng, (batch,)) * on)
  return warp(images, similarity_flow(size, shift, angle, zoom))


def latent_spread_penalty(target_latent, reference_latent, min_spread: float):
  """Hinge that keeps the motion latent from collapsing to one value per clip.

  Early in training the renderer cannot yet use the latent, so any variation in it is noise to the
  renderer, and the encoder learns to make it constant (measured: within-clip std 0.003 after 600
  steps, against 0.06 at initialisation). Target and reference come from the same clip and differ
  only in motion, so asking the spread (std over the batch) of their latent difference to be at
  least `min_spread` in every dimension (VICReg's variance term, Bardes et al. 2022, on
  differences) forces the latent to keep what moves; the renderer decides which of it matters.
  It also fixes the within-clip scale of the latent that stage 2 models.
  """
  difference = (target_latent - reference_latent).reshape(target_latent.shape[0], -1)
  spread = jnp.sqrt(jnp.var(difference, axis=0) + 1e-4)
  return jnp.mean(jax.nn.relu(min_spread - spread))


@dataclasses.dataclass(frozen=True)
class RendererSettings(TrainSettings):
  time_schedule: str  # flow times: "logit_normal" or "uniform" (`flow.sample_time`)
  time_logit_mean: float
  change_boost: float
  appearance_jitter: float
  latent_spread: float
  warp_loss: float
  pose_jitter: float


class RendererStage(Stage):
  name = "renderer"
  trains = ("motion_encoder", "renderer")
  settings_type = RendererSettings
  data_seed_offset = 0

  def loss(self, params, batch, rng):
    encoder, renderer, settings = self.models.motion_encoder, self.models.renderer, self.settings
    reference = to_model_image(batch["reference"])
    jitter_rng, ref_jitter_rng, time_rng, noise_rng, pose_rng = jax.random.split(rng, 5)
    target = random_similarity(
      to_model_image(batch["frames"][:, 0]), pose_rng, settings.pose_jitter
    )
    encode = lambda images, key: encoder.apply(
      {"params": params["motion_encoder"]},
      appearance_jitter(images, key, settings.appearance_jitter),
    )
    motion = encode(target, jitter_rng)
    reference_motion = encode(reference, ref_jitter_rng)
    spread = latent_spread_penalty(motion, reference_motion, settings.latent_spread)
    t = flow.sample_time(
      time_rng, target.shape[:1], settings.time_schedule, mean=settings.time_logit_mean
    )
    noise = jax.random.normal(noise_rng, target.shape)
    x_t = flow.interpolate(target, noise, t)
    frame, intermediates = renderer.apply(
      {"params": params["renderer"]},
      x_t,
      t,
      reference,
      motion,
      reference_motion,
      mutable=["intermediates"],
    )
    frame_loss = flow.weighted_mse(
      frame, target, change_weights(target, reference, settings.change_boost)
    )
    metrics = {"frame_loss": frame_loss, "spread_penalty": spread}
    loss = frame_loss + spread
    if renderer.warp_channels:
      # The warp's own error, straight from the target: the field learns where pixels go long
      # before the U-Net learns to lean on the warped image. L1, so that what no warp can make
      # (the inside of the mouth) does not pull the field around; over a pyramid of scales, so
      # that displacements of several pixels have a gradient.
      (warped,) = intermediates["intermediates"]["warped"]
      metrics["warp_error"] = jnp.mean(jnp.abs(warped - target))
      loss = loss + settings.warp_loss * pyramid_l1(warped, target)
    return loss, metrics

  def dataset(self, run_dir, shard_index, shard_count):
    del run_dir  # stage 1 needs nothing from an earlier stage
    return self.windows(1, 0, shard_index, shard_count)
