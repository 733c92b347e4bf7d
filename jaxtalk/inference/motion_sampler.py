"""Rolling diffusion-forcing sampler for the motion transformer, and its recompute reference.

Schedule ("pyramid"): each chunk of frames is denoised in `steps` Euler steps; `chunks_in_flight`
chunks are denoised at once, staggered by `steps // chunks_in_flight` steps, so the oldest chunk in
flight is nearly clean and the newest is pure noise. Every `steps // chunks_in_flight` iterations
the schedule *advances*: the oldest chunk finishes, is run once more at t = 1 to get its clean
keys/values, which enter a fixed-size KV cache (the model's `lookback_chunks` most recent chunks,
plus the reference as a permanent sink), and a fresh noise chunk joins those in flight. The whole
loop is a `lax.scan` over advances, and the cache has a fixed size, so memory does not grow with
the length of the audio.

`sample_motion_recompute` computes the same thing without a cache, running the model over the whole
history at every step (the training-mode forward). It is the reference the cached sampler is tested
against, and the baseline in the benchmark.

Warm-up needs no special case: chunks "before the start" have negative frame indices, which every
attention mask treats as empty slots.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxtalk.diffusion.flow import time_grid
from jaxtalk.models.motion_transformer import MotionTransformer


@dataclasses.dataclass(frozen=True)
class RollingSchedule:
  """Denoising steps per chunk and how many chunks are denoised at once (a divisor of steps)."""

  steps: int = 8
  chunks_in_flight: int = 2
  cfg_scale: float = 1.0

  def __post_init__(self):
    if self.steps % self.chunks_in_flight:
      raise ValueError(
        f"steps ({self.steps}) must be a multiple of chunks_in_flight ({self.chunks_in_flight})"
      )

  @property
  def steps_per_advance(self) -> int:
    return self.steps // self.chunks_in_flight

  def slot_steps(self, iteration):
    """Steps already taken by each chunk in flight (oldest first) at an iteration within an advance."""
    return (
      self.chunks_in_flight - 1 - jnp.arange(self.chunks_in_flight)
    ) * self.steps_per_advance + iteration


def chunk_noise(rng, chunk_index, shape):
  """Initial noise of one chunk, a function of its index only, so both samplers draw the same."""
  # Warm-up chunks have negative indices; wrapping them to uint32 keeps every index distinct.
  index = jnp.asarray(chunk_index, jnp.int32).astype(jnp.uint32)
  return jax.random.normal(jax.random.fold_in(rng, index), shape)


@dataclasses.dataclass(frozen=True)
class _Layout:
  """Where things are: chunks, padding of the audio features, guidance batch."""

  model: MotionTransformer
  schedule: RollingSchedule
  num_frames: int

  @property
  def chunk(self):
    return self.model.chunk_size

  @property
  def num_chunks(self):
    return -(-self.num_frames // self.chunk)

  @property
  def num_advances(self):
    return self.num_chunks + self.schedule.chunks_in_flight - 1

  @property
  def audio_front_pad(self):
    """Frames of silence before frame 0 so the audio slice of every advance starts in range."""
    return (self.schedule.chunks_in_flight - 1) * self.chunk + self.model.audio_radius

  @property
  def audio_back_pad(self):
    return (self.num_advances * self.chunk + self.model.audio_radius) - self.num_frames

  @property
  def guided(self):
    return self.schedule.cfg_scale != 1.0


def padded_audio_frames(model: MotionTransformer, schedule: RollingSchedule, num_frames: int):
  """(front, back): frames of silence to add around the waveform before encoding it."""
  layout = _Layout(model, schedule, num_frames)
  return layout.audio_front_pad, layout.audio_back_pad


def _guidance_inputs(layout, audio, reference):
  """Duplicate the batch for classifier-free guidance: first half with audio, second without."""
  batch = audio.shape[0]
  if not layout.guided:
    return audio, reference, jnp.ones((batch,), bool)
  keep = jnp.concatenate([jnp.ones((batch,), bool), jnp.zeros((batch,), bool)])
  return jnp.concatenate([audio, audio]), jnp.concatenate([reference, reference]), keep


def _combine_guidance(layout, velocity):
  if not layout.guided:
    return velocity
  cond, uncond = jnp.split(velocity, 2)
  return uncond + layout.schedule.cfg_scale * (cond - uncond)


def _double(layout, x):
  return jnp.concatenate([x, x]) if layout.guided else x


def sample_motion(
  model: MotionTransformer,
  params,
  audio_features,
  reference,
  rng,
  schedule: RollingSchedule,
  num_frames: int,
):
  """Motion latents [B, num_frames, latent_dim] with the rolling KV-cache sampler.

  `audio_features` [B, front + num_frames + back, D] must be encoded from the waveform padded with
  `padded_audio_frames(...)` frames of silence, as in training where audio outside a clip is silent.
  """
  layout = _Layout(model, schedule, num_frames)
  chunk, in_flight = layout.chunk, schedule.chunks_in_flight
  batch, latent_dim = reference.shape
  audio, ref, keep = _guidance_inputs(layout, audio_features, reference)
  grid = time_grid(schedule.steps)
  audio_len = in_flight * chunk + 2 * model.audio_radius
  apply = lambda *a, **kw: model.apply({"params": params}, *a, audio_keep=keep, **kw)

  # The sink's keys/values: the reference alone, a sequence with no frames.
  empty = jnp.zeros((ref.shape[0], 0, latent_dim))
  _, sink_kv = apply(empty, jnp.zeros((ref.shape[0], 0)), audio[:, :1], reference=ref)
  cache_len = model.lookback_chunks * chunk

  def with_empty_frames(kv):
    k, v = kv
    pad = jnp.zeros((k.shape[0], cache_len) + k.shape[2:], k.dtype)
    return jnp.concatenate([k, pad], 1), jnp.concatenate([v, pad], 1)

  cache = [with_empty_frames(kv) for kv in sink_kv]

  noise_shape = (batch, chunk, latent_dim)
  first = jnp.concatenate(
    [chunk_noise(rng, n, noise_shape) for n in range(-in_flight + 1, 1)], axis=1
  )

  def advance(carry, s):
    latents, cache = carry
    frame_offset = (s - in_flight + 1) * chunk
    context_offset = frame_offset - cache_len
    audio_start = frame_offset - model.audio_radius + layout.audio_front_pad
    audio_slice = jax.lax.dynamic_slice_in_dim(audio, audio_start, audio_len, axis=1)
    audio_offset = frame_offset - model.audio_radius

    def denoise(i, latents):
      done = schedule.slot_steps(i)
      t = jnp.repeat(grid[done], chunk)[None].repeat(latents.shape[0], 0)
      dt = jnp.repeat(grid[done + 1] - grid[done], chunk)[None, :, None]
      velocity, _ = apply(
        _double(layout, latents),
        _double(layout, t),
        audio_slice,
        kv_context=cache,
        frame_offset=frame_offset,
        context_offset=context_offset,
        audio_offset=audio_offset,
      )
      return latents + dt * _combine_guidance(layout, velocity)

    latents = jax.lax.fori_loop(0, schedule.steps_per_advance, denoise, latents)

    finished = latents[:, :chunk]
    _, finished_kv = apply(
      _double(layout, finished),
      jnp.ones((audio.shape[0], chunk)),
      audio_slice,
      kv_context=cache,
      frame_offset=frame_offset,
      context_offset=context_offset,
      audio_offset=audio_offset,
    )
    cache = [
      (
        jnp.concatenate([ck[:, :1], ck[:, 1 + chunk :], fk], 1),
        jnp.concatenate([cv[:, :1], cv[:, 1 + chunk :], fv], 1),
      )
      for (ck, cv), (fk, fv) in zip(cache, finished_kv)
    ]
    latents = jnp.concatenate([latents[:, chunk:], chunk_noise(rng, s + 1, noise_shape)], axis=1)
    return (latents, cache), finished

  _, finished = jax.lax.scan(advance, (first, cache), jnp.arange(layout.num_advances))
  frames = jnp.moveaxis(finished[in_flight - 1 :], 0, 1).reshape(batch, -1, latent_dim)
  return frames[:, :num_frames]


def sample_motion_recompute(
  model: MotionTransformer,
  params,
  audio_features,
  reference,
  rng,
  schedule: RollingSchedule,
  num_frames: int,
):
  """The same samples as `sample_motion`, recomputing the whole history at every step (no cache)."""
  layout = _Layout(model, schedule, num_frames)
  chunk, in_flight = layout.chunk, schedule.chunks_in_flight
  batch, latent_dim = reference.shape
  audio, ref, keep = _guidance_inputs(layout, audio_features, reference)
  grid = time_grid(schedule.steps)
  noise_shape = (batch, chunk, latent_dim)
  # Buffer slot b holds chunk b - (in_flight - 1); negative chunks are the empty warm-up slots.
  latents = jnp.concatenate(
    [chunk_noise(rng, n, noise_shape) for n in range(-in_flight + 1, layout.num_chunks)], axis=1
  )
  buffer_offset = -(in_flight - 1) * chunk
  slot_chunk = jnp.arange(layout.num_advances) - (in_flight - 1)

  def advance(latents, s):
    def denoise(i, latents):
      # Steps taken per chunk: finished chunks are at `steps`, chunks not yet started at 0.
      done = jnp.clip((s - slot_chunk) * schedule.steps_per_advance + i, 0, schedule.steps)
      t = jnp.repeat(grid[done], chunk)[None].repeat(batch, 0)
      dt = jnp.repeat(grid[jnp.minimum(done + 1, schedule.steps)] - grid[done], chunk)
      active = jnp.repeat((slot_chunk <= s) & (slot_chunk > s - in_flight), chunk)
      velocity, _ = model.apply(
        {"params": params},
        _double(layout, latents),
        _double(layout, t),
        audio,
        audio_keep=keep,
        reference=ref,
        frame_offset=buffer_offset,
        audio_offset=-layout.audio_front_pad,
      )
      step = jnp.where(
        active[None, :, None], dt[None, :, None] * _combine_guidance(layout, velocity), 0
      )
      return latents + step

    return jax.lax.fori_loop(0, schedule.steps_per_advance, denoise, latents), None

  latents, _ = jax.lax.scan(advance, latents, jnp.arange(layout.num_advances))
  return latents[:, (in_flight - 1) * chunk :][:, :num_frames]
