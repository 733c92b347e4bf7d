"""Portrait + speech -> frames: the whole inference path, as functions a notebook can call.

    model = TalkingHead.load("jaxtalk/assets/demo/model")
    frames = model.generate(portrait_uint8, waveform_16k, seed=0)

1. the waveform, padded with silence as in training, goes through the audio encoder;
2. the motion encoder reads the portrait's own motion latent (the reference, the sampler's sink);
3. the rolling diffusion-forcing sampler generates one motion latent per video frame (one jitted
   `lax.scan` over the whole audio);
4. the renderer turns reference + motion into frames, a batch of frames at a time. Every frame
   starts from the same noise image, so what changes between frames is only what the motion says,
   which keeps the video free of flicker.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.diffusion import flow
from jaxtalk.errors import UserError
from jaxtalk.eval.metrics import psnr
from jaxtalk.inference.bundle import load_bundle
from jaxtalk.inference.motion_sampler import RollingSchedule, padded_audio_frames, sample_motion
from jaxtalk.models.factory import Models, to_model_image, to_uint8_image
from jaxtalk.timebase import SAMPLES_PER_FRAME, frames_of


@dataclasses.dataclass(frozen=True)
class SampleOptions:
  """How to sample: the `sample` section of a config, plus the seed. Checked on construction."""

  render_steps: int
  motion_steps: int
  chunks_in_flight: int
  cfg_scale: float
  batch_frames: int
  seed: int = 0  # not a config key: a property of one video, not of the model

  def __post_init__(self):
    for name in ("render_steps", "motion_steps", "chunks_in_flight", "batch_frames"):
      if getattr(self, name) < 1:
        raise UserError(f"{name} is {getattr(self, name)}; it must be at least 1")
    if self.motion_steps % self.chunks_in_flight:
      raise UserError(
        f"motion_steps ({self.motion_steps}) must be a multiple of chunks_in_flight "
        f"({self.chunks_in_flight}): chunks in flight are staggered by an equal share of the steps"
      )
    if self.cfg_scale < 0:
      raise UserError(f"cfg_scale is {self.cfg_scale}; use 0 (audio-free), 1 (no guidance) or more")

  @classmethod
  def from_config(cls, sample_cfg, **overrides) -> SampleOptions:
    """The config's options, with every override that is not None in their place."""
    values = sample_cfg.to_dict()
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)

  @property
  def schedule(self) -> RollingSchedule:
    return RollingSchedule(self.motion_steps, self.chunks_in_flight, self.cfg_scale)


class TalkingHead:
  """The trained networks and their weights, with jitted pieces compiled once per shape."""

  def __init__(self, config, params):
    self.config = config
    self.models = Models.from_config(config)
    self.params = jax.device_put(params)
    self.image_size = config.data.image_size

  @classmethod
  def load(cls, bundle_dir) -> TalkingHead:
    return cls(*load_bundle(bundle_dir))

  # ------------------------------------------------------------------------------- jitted parts
  # Weights are passed as arguments, not read from `self`, so they are not baked into the
  # compiled programs as constants.
  @functools.partial(jax.jit, static_argnums=(0,))
  def reference_latent(self, params, portrait):
    """uint8 [S, S, 3] -> the portrait's motion latent [1, latent_dim]."""
    return self.models.encode_motion(params["motion_encoder"], portrait[None])

  @functools.partial(jax.jit, static_argnums=(0, 5, 6))
  def motion(self, params, waveform, reference, rng, schedule: RollingSchedule, num_frames: int):
    """Padded waveform [1, N] -> motion latents [1, num_frames, latent_dim]."""
    features = self.models.audio_encoder.apply({"params": params["audio_encoder"]}, waveform)
    return sample_motion(
      self.models.motion, params["motion"], features, reference, rng, schedule, num_frames
    )

  @functools.partial(jax.jit, static_argnums=(0, 5))
  def render(self, params, portrait, latents, noise, steps: int):
    """Motion latents [B, latent_dim] -> uint8 frames [B, S, S, 3], all from the same `noise`."""
    batch = latents.shape[0]
    reference = jnp.broadcast_to(to_model_image(portrait), (batch,) + portrait.shape)
    tokens = self.models.tokens(latents)
    renderer = self.models.renderer
    velocity = lambda x, t: flow.velocity_from_data(
      renderer.apply({"params": params["renderer"]}, x, t, reference, tokens), x, t
    )
    images = flow.euler_sample(velocity, jnp.broadcast_to(noise, reference.shape), steps)
    return to_uint8_image(images)

  # ------------------------------------------------------------------------------------ public
  def motion_latents(
    self, waveform: np.ndarray, portrait: np.ndarray, options: SampleOptions
  ) -> np.ndarray:
    """Motion latents [T, latent_dim] for a 16 kHz mono waveform, T = timebase.frames_of(len)."""
    num_frames = frames_of(len(waveform))
    schedule = options.schedule
    front, back = padded_audio_frames(self.models.motion, schedule, num_frames)
    spf = SAMPLES_PER_FRAME
    padded = np.zeros(((front + num_frames + back) * spf,), np.float32)
    padded[front * spf : (front + num_frames) * spf] = waveform[: num_frames * spf]
    rng = jax.random.fold_in(jax.random.key(options.seed), 1)
    reference = self.reference_latent(self.params, portrait)
    latents = self.motion(
      self.params, jnp.asarray(padded)[None], reference, rng, schedule, num_frames
    )
    return np.asarray(latents[0])

  def render_frames(
    self, portrait: np.ndarray, latents: np.ndarray, options: SampleOptions
  ) -> Iterator[np.ndarray]:
    """Yields uint8 frames [b, S, S, 3], `batch_frames` at a time (the last batch padded and cut)."""
    noise = jax.random.normal(jax.random.key(options.seed), portrait.shape)
    batch = options.batch_frames
    for start in range(0, len(latents), batch):
      chunk = latents[start : start + batch]
      padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), 0)])
      frames = self.render(self.params, portrait, jnp.asarray(padded), noise, options.render_steps)
      yield np.asarray(frames)[: len(chunk)]

  def portrait_psnr(self, portrait: np.ndarray, options: SampleOptions) -> float:
    """How closely the renderer redraws the portrait from the portrait's own motion, in dB.

    A face like the training faces comes back nearly as it was; one far from them (a photograph,
    for a model trained on cartoons) comes back changed. One frame through the compiled renderer.
    """
    latent = np.asarray(self.reference_latent(self.params, portrait))
    frame = next(self.render_frames(portrait, latent, options))
    return float(psnr(frame, portrait[None])[0])

  def unfamiliar_portrait(self, portrait: np.ndarray, options: SampleOptions) -> str | None:
    """A one-line warning when the portrait is far from the training faces (see `portrait_psnr`
    and the config's data.familiar_psnr), else None."""
    threshold = self.config.data.familiar_psnr
    if threshold <= 0:
      return None
    value = self.portrait_psnr(portrait, options)
    if value >= threshold:
      return None
    return (
      f"warning: this portrait is far from the faces the model was trained on (redrawn at "
      f"{value:.1f} dB, familiar faces {threshold:.0f} dB or more); expect it to move less "
      f"and to change"
    )

  def generate(
    self,
    portrait: np.ndarray,
    waveform: np.ndarray,
    options: SampleOptions | None = None,
    progress: Callable[[int], None] | None = None,
  ) -> np.ndarray:
    """uint8 portrait [S, S, 3] + 16 kHz waveform -> uint8 frames [T, S, S, 3]."""
    options = options or SampleOptions.from_config(self.config.sample)
    latents = self.motion_latents(waveform, portrait, options)
    frames = []
    for batch in self.render_frames(portrait, latents, options):
      frames.append(batch)
      if progress:
        progress(len(batch))
    return np.concatenate(frames)
