"""Portrait + speech -> frames: the whole inference path, as functions a notebook can call.

    model = TalkingHead.load("jaxtalk/assets/demo/model")
    frames = model.generate(portrait_uint8, waveform_16k)      # a whole file
    session = model.stream(portrait_uint8)                      # or live:
    frames = session.push(samples)  ...  session.finish()

1. the audio encoder turns the waveform, with silence before it as in training, into one feature
   per video frame, a block at a time;
2. the motion encoder reads the portrait's own motion latent (the reference, the sampler's sink);
3. the rolling diffusion-forcing sampler generates one motion latent per video frame, one chunk
   per advance;
4. the renderer turns reference + motion into frames. Every frame starts from the same noise
   image, so what changes between frames is only what the motion says, which keeps the video free
   of flicker.

`inference.stream` drives these pieces as audio arrives; a file is one push. Each jitted piece
below has one shape per model and schedule, so it compiles once whatever the audio's length.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.data.acting import ActingLayout, check_controls
from jaxtalk.diffusion import flow
from jaxtalk.errors import UserError
from jaxtalk.eval.metrics import psnr
from jaxtalk.inference.bundle import load_bundle
from jaxtalk.inference.motion_sampler import (
  MotionState,
  RollingSchedule,
  advance_motion,
  init_motion,
)
from jaxtalk.inference.stream import MotionStream, StreamSession, encode_block
from jaxtalk.models.factory import Models, to_model_image, to_uint8_image


@dataclasses.dataclass(frozen=True)
class SampleOptions:
  """How to sample: the `sample` section of a config, plus what belongs to one video (the seed and
  the acting controls). Checked on construction; `check_controls` checks the controls against a
  model's emotions."""

  render_steps: int
  motion_steps: int
  chunks_in_flight: int
  cfg_scale: float  # guidance by the audio
  batch_frames: int
  emotion_cfg_scale: float = 1.0  # guidance by the emotion, when one is given
  # Not config keys: properties of one video, not of the model. None is auto: the model decides.
  seed: int = 0
  emotion: str | None = None  # one of the model's emotions (config.motion.emotions)
  emotion_intensity: float = 1.0  # 0 (neutral) .. 1 (the emotion in full)
  pose_amplitude: float | None = None  # times the trained head motion; 0 holds the head still
  blink_rate: float | None = None  # blinks a minute; 0: none

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
    if self.emotion_cfg_scale < 0:
      raise UserError(
        f"emotion_cfg_scale is {self.emotion_cfg_scale}; use 0 (ignore the emotion), 1 (no "
        f"guidance) or more"
      )

  def check_controls(self, emotions: tuple[str, ...]) -> None:
    """One-line errors for acting controls a model with these emotions cannot take."""
    check_controls(
      emotions, self.emotion, self.emotion_intensity, self.pose_amplitude, self.blink_rate
    )

  def acting(self, layout: ActingLayout) -> np.ndarray:
    """The acting controls as the motion model reads them, [1, A]."""
    return layout.vector(
      self.emotion, self.emotion_intensity, self.pose_amplitude, self.blink_rate
    )[None]

  @classmethod
  def from_config(cls, sample_cfg, **overrides) -> SampleOptions:
    """The config's options, with every override that is not None in their place."""
    values = sample_cfg.to_dict()
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)

  @property
  def schedule(self) -> RollingSchedule:
    """The sampler's program: steps, and which guidance branches run (a scale of 1 needs none;
    without an emotion given there is nothing to guide by)."""
    return RollingSchedule(
      self.motion_steps,
      self.chunks_in_flight,
      audio_guided=self.cfg_scale != 1.0,
      emotion_guided=self.emotion is not None and self.emotion_cfg_scale != 1.0,
    )

  @property
  def guidance(self) -> np.ndarray:
    """float32 [2]: the audio's and the emotion's guidance scales, the sampler's input."""
    return np.array([self.cfg_scale, self.emotion_cfg_scale], np.float32)


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

  @functools.partial(jax.jit, static_argnums=(0, 4))
  def start_motion(
    self, params, portrait, rng, schedule: RollingSchedule, acting, guidance
  ) -> MotionState:
    """The rolling sampler's state before the audio, with the portrait's latent as its sink, the
    acting controls `acting` [1, A] held for the whole video and the guidance scales [2]."""
    reference = self.reference_latent(params, portrait)
    motion = self.models.motion
    return init_motion(motion, params["motion"], reference, rng, schedule, acting, guidance)

  def empty_features(self, frames: int) -> jax.Array:
    """A feature buffer [1, frames, dim]; `inference.stream` fills it before it is read."""
    return jnp.zeros((1, frames, self.config.audio.dim))

  @functools.partial(jax.jit, static_argnums=(0,))
  def push_features(self, params, features, window):
    """Encodes one block: waveform [1, (chunk + 2 context) frames] -> the buffer, shifted a chunk."""
    chunk = self.models.motion.chunk_size
    encoder, encoder_params = self.models.audio_encoder, {"params": params["audio_encoder"]}
    encoded = encode_block(encoder, encoder_params, window, chunk)
    return jnp.concatenate([features[:, chunk:], encoded], axis=1)

  @functools.partial(jax.jit, static_argnums=(0, 4))
  def advance(self, params, state: MotionState, features, schedule: RollingSchedule):
    """One advance of the rolling sampler: (the next state, the chunk of latents it retires)."""
    return advance_motion(self.models.motion, params["motion"], state, features, schedule)

  @functools.partial(jax.jit, static_argnums=(0, 5))
  def render(self, params, portrait, latents, noise, steps: int):
    """Motion latents [B, latent_dim] -> uint8 frames [B, S, S, 3], all from the same `noise`."""
    batch = latents.shape[0]
    reference = jnp.broadcast_to(to_model_image(portrait), (batch,) + portrait.shape)
    tokens = self.models.tokens(latents)
    reference_tokens = jnp.broadcast_to(
      self.models.tokens(self.reference_latent(params, portrait)), tokens.shape
    )
    renderer = self.models.renderer
    velocity = lambda x, t: flow.velocity_from_data(
      renderer.apply({"params": params["renderer"]}, x, t, reference, tokens, reference_tokens),
      x,
      t,
    )
    images = flow.euler_sample(velocity, jnp.broadcast_to(noise, reference.shape), steps)
    return to_uint8_image(images)

  # ------------------------------------------------------------------------------------ public
  def render_noise(self, portrait: np.ndarray, seed: int) -> jax.Array:
    """The one noise image every frame of a video starts from."""
    return jax.random.normal(jax.random.key(seed), portrait.shape)

  def stream(self, portrait: np.ndarray, options: SampleOptions | None = None) -> StreamSession:
    """A streaming session: push audio as it arrives, get frames as they are final."""
    return StreamSession(self, portrait, options or self.default_options())

  def default_options(self) -> SampleOptions:
    return SampleOptions.from_config(self.config.sample)

  def motion_latents(
    self, waveform: np.ndarray, portrait: np.ndarray, options: SampleOptions
  ) -> np.ndarray:
    """Motion latents [T, latent_dim] for a 16 kHz mono waveform, T = timebase.frames_of(len)."""
    stream = MotionStream(self, portrait, options)
    return np.concatenate([stream.push(waveform), stream.finish()])

  def render_frames(
    self, portrait: np.ndarray, latents: np.ndarray, options: SampleOptions
  ) -> Iterator[np.ndarray]:
    """Yields uint8 frames [b, S, S, 3], `batch_frames` at a time (the last batch padded and cut)."""
    noise = self.render_noise(portrait, options.seed)
    return self.render_batches(portrait, latents, noise, options.batch_frames, options.render_steps)

  def render_batches(
    self, portrait: np.ndarray, latents: np.ndarray, noise, batch: int, steps: int
  ) -> Iterator[np.ndarray]:
    """Yields the frames of `latents`, `batch` a call: every call has one shape, so the last
    batch is padded with its last latent and cut after rendering."""
    for start in range(0, len(latents), batch):
      chunk = latents[start : start + batch]
      padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), 0)])
      frames = self.render(self.params, portrait, jnp.asarray(padded), noise, steps)
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
    self, portrait: np.ndarray, waveform: np.ndarray, options: SampleOptions | None = None
  ) -> np.ndarray:
    """uint8 portrait [S, S, 3] + 16 kHz waveform -> uint8 frames [T, S, S, 3]: the whole file
    pushed through one streaming session."""
    session = self.stream(portrait, options)
    return np.concatenate([session.push(waveform), session.finish()])
