"""Rolling diffusion-forcing sampler for the motion transformer, and its recompute reference.

Schedule ("pyramid"): each chunk of frames is denoised in `steps` Euler steps; `chunks_in_flight`
chunks are denoised at once, staggered by `steps // chunks_in_flight` steps, so the oldest chunk in
flight is nearly clean and the newest is pure noise. Every `steps // chunks_in_flight` iterations
the schedule *advances*: the oldest chunk finishes, is run once more at t = 1 to get its clean
keys/values, which enter a fixed-size KV cache (the model's `lookback_chunks` most recent chunks,
plus the reference as a permanent sink), and a fresh noise chunk joins those in flight.

`advance_motion` is one advance: a pure function of a fixed-size `MotionState` and one window of
audio features, so memory does not grow with the length of the audio, and its program does not
depend on that length. `sample_motion` scans it over the features of a whole file;
`inference.stream` calls it once per chunk of audio as the audio arrives.

`sample_motion_recompute` computes the same thing without a cache, running the model over the whole
history at every step (the training-mode forward). It is the reference the cached sampler is tested
against, and the baseline in the benchmark.

Guidance: one scale guides by the audio, another by a given emotion, each on its own. The model
runs once per branch in one batch: with the audio and the acting controls, without the emotion
(when emotion guidance is on) and without the audio (when audio guidance is on; without the emotion
as well when both are), and the velocities combine as
    v = v(none) + cfg * (v(audio) - v(none)) + emotion_cfg * (v(audio, emotion) - v(audio)).
Which branches run is the schedule's (`audio_guided`, `emotion_guided`), part of the compiled
program; the scales themselves are an array input (`guidance`, carried in the state), so another
value needs no new program. Pose amplitude and blink rate are held in every branch: they
condition, they are not guided.

Warm-up needs no special case: chunks "before the start" have negative frame indices, which every
attention mask treats as empty slots.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxtalk.diffusion.flow import time_grid
from jaxtalk.models.motion_transformer import MotionTransformer


@dataclasses.dataclass(frozen=True)
class RollingSchedule:
  """Denoising steps per chunk, how many chunks are denoised at once (a divisor of steps), and
  which guidance branches run (their scales are inputs: see the module docstring)."""

  steps: int = 8
  chunks_in_flight: int = 2
  audio_guided: bool = False
  emotion_guided: bool = False  # only with an emotion given: without one there is none to guide by

  def __post_init__(self):
    if self.steps % self.chunks_in_flight:
      raise ValueError(
        f"steps ({self.steps}) must be a multiple of chunks_in_flight ({self.chunks_in_flight})"
      )

  @property
  def branches(self) -> tuple[tuple[bool, bool], ...]:
    """(hears the audio, sees the emotion) of each branch of the guided batch, in order."""
    rows = [(True, True)]
    if self.emotion_guided:
      rows.append((True, False))
    if self.audio_guided:
      rows.append((False, not self.emotion_guided))
    return tuple(rows)

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
  """Where a whole file's chunks and audio padding are."""

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


def padded_audio_frames(model: MotionTransformer, schedule: RollingSchedule, num_frames: int):
  """(front, back): frames of silence to add around the waveform before encoding it."""
  layout = _Layout(model, schedule, num_frames)
  return layout.audio_front_pad, layout.audio_back_pad


def _replicate(schedule: RollingSchedule, x):
  """Guidance runs every input once per branch (`RollingSchedule.branches`)."""
  return jnp.concatenate([x] * len(schedule.branches)) if len(schedule.branches) > 1 else x


def _audio_keep(schedule: RollingSchedule, batch: int):
  """Which rows of the replicated batch hear the audio."""
  return jnp.repeat(jnp.array([audio for audio, _ in schedule.branches]), batch)


def _branch_acting(model: MotionTransformer, schedule: RollingSchedule, acting, batch: int):
  """acting [B, A] (None: none given) -> [B', A]: once per branch, the emotion group zeroed where
  a branch does not see it."""
  if acting is None:
    acting = jnp.zeros((batch, model.acting_layout.width))
  acting = jnp.asarray(acting, jnp.float32)
  emotion = jnp.asarray(model.acting_layout.group_mask(model.acting_layout.emotion_group))
  return jnp.concatenate(
    [acting if sees else acting * (1.0 - emotion) for _, sees in schedule.branches]
  )


def _combine_guidance(schedule: RollingSchedule, velocity, guidance):
  """The branches' velocities combined by `guidance` [2] (audio scale, emotion scale)."""
  v = dict(zip(schedule.branches, jnp.split(velocity, len(schedule.branches))))
  full, (audio_scale, emotion_scale) = v[True, True], guidance
  if schedule.audio_guided and schedule.emotion_guided:
    none, audio = v[False, False], v[True, False]
    return none + audio_scale * (audio - none) + emotion_scale * (full - audio)
  if schedule.audio_guided:
    return v[False, True] + audio_scale * (full - v[False, True])
  if schedule.emotion_guided:
    return v[True, False] + emotion_scale * (full - v[True, False])
  return full


def _guidance(guidance) -> jax.Array:
  """(audio scale, emotion scale) as the float32 [2] the sampler carries."""
  return jnp.asarray(guidance, jnp.float32).reshape(2)


def _frames_acting(acting, frames: int):
  """[B', A] -> [B', frames, A]: the controls hold for every frame."""
  return jnp.broadcast_to(acting[:, None], (acting.shape[0], frames, acting.shape[-1]))


class MotionState(NamedTuple):
  """What the cached sampler carries from one advance to the next; its size is fixed."""

  latents: (
    jax.Array
  )  # [B, chunks_in_flight * chunk, latent_dim]: the chunks in flight, oldest first
  # (k, v), each [depth, B', 1 + lookback_chunks * chunk, heads, head_dim]: every layer's keys and
  # values of the sink and of the finished chunks, oldest first.
  cache: tuple[jax.Array, jax.Array]
  advance: jax.Array  # int32 []: the index of the next advance
  rng: jax.Array  # the key every chunk's initial noise is folded from
  acting: jax.Array  # [B', A]: the acting controls of every branch (`RollingSchedule.branches`)
  guidance: jax.Array  # float32 [2]: the audio's and the emotion's guidance scales


def audio_window_frames(model: MotionTransformer, schedule: RollingSchedule) -> int:
  """Audio features one advance reads: the chunks in flight and the audio radius on both sides."""
  return schedule.chunks_in_flight * model.chunk_size + 2 * model.audio_radius


def init_motion(
  model: MotionTransformer,
  params,
  reference,
  rng,
  schedule: RollingSchedule,
  acting=None,
  guidance=(1.0, 1.0),
):
  """The state before advance 0: warm-up noise in flight, the reference's keys/values as the sink.

  `acting` [B, A]: the acting controls (`jaxtalk.data.acting`), held for the whole video; None
  gives none. `guidance`: the (audio, emotion) guidance scales of the branches `schedule` runs."""
  chunk, in_flight = model.chunk_size, schedule.chunks_in_flight
  batch, latent_dim = reference.shape
  ref = _replicate(schedule, reference)
  # The sink's keys/values: the reference alone, a sequence with no frames, so no audio is heard
  # (a placeholder of the audio features' width stands in).
  no_audio = jnp.zeros((ref.shape[0], 1) + params["null_audio"].shape)
  _, sink_kv = model.apply(
    {"params": params},
    jnp.zeros((ref.shape[0], 0, latent_dim)),
    jnp.zeros((ref.shape[0], 0)),
    no_audio,
    reference=ref,
  )
  cache_len = model.lookback_chunks * chunk

  def with_empty_frames(sink):  # [depth, B', 1, ...] -> [depth, B', 1 + cache_len, ...]
    empty = jnp.zeros(sink.shape[:2] + (cache_len,) + sink.shape[3:], sink.dtype)
    return jnp.concatenate([sink, empty], axis=2)

  noise_shape = (batch, chunk, latent_dim)
  first = jnp.concatenate(
    [chunk_noise(rng, n, noise_shape) for n in range(-in_flight + 1, 1)], axis=1
  )
  branch_acting = _branch_acting(model, schedule, acting, batch)
  return MotionState(
    first,
    jax.tree.map(with_empty_frames, sink_kv),
    jnp.int32(0),
    rng,
    branch_acting,
    _guidance(guidance),
  )


def advance_motion(
  model: MotionTransformer, params, state: MotionState, audio_window, schedule: RollingSchedule
):
  """One advance: denoise the chunks in flight, retire the oldest into the cache, draw a new one.

  `audio_window` [B, audio_window_frames, D] holds the features of frames
  `(s - chunks_in_flight + 1) * chunk - audio_radius` onwards, s = `state.advance`.
  Returns (the next state, the retired chunk [B, chunk, latent_dim]: final from advance
  `chunks_in_flight - 1` on, warm-up slots before).
  """
  chunk, in_flight, s = model.chunk_size, schedule.chunks_in_flight, state.advance
  batch, _, latent_dim = state.latents.shape
  replicate = lambda x: _replicate(schedule, x)
  keep = _audio_keep(schedule, batch)
  audio = replicate(audio_window)
  acting = _frames_acting(state.acting, state.latents.shape[1])
  grid = time_grid(schedule.steps)
  cache_len = model.lookback_chunks * chunk
  frame_offset = (s - in_flight + 1) * chunk
  offsets = dict(
    kv_context=state.cache,
    frame_offset=frame_offset,
    context_offset=frame_offset - cache_len,
    audio_offset=frame_offset - model.audio_radius,
  )
  apply = lambda x, t: model.apply(
    {"params": params}, x, t, audio, audio_keep=keep, acting=acting, **offsets
  )

  # Every iteration evaluates all chunks in flight; the last one, after the last step, finds the
  # oldest chunk at t = 1 and takes no step: its keys/values there are the clean ones the cache
  # wants (block-causal attention keeps them blind to the younger chunks beside them). One model
  # evaluation in the loop, not a second one after it, halves what the advance compiles.
  last = schedule.steps_per_advance

  def evaluate(i, carry):
    latents, _ = carry
    done = schedule.slot_steps(i)
    t = jnp.repeat(grid[done], chunk)[None].repeat(latents.shape[0], 0)
    step = jnp.where(i < last, grid[jnp.minimum(done + 1, schedule.steps)] - grid[done], 0.0)
    velocity, kv = apply(replicate(latents), replicate(t))
    dt = jnp.repeat(step, chunk)[None, :, None]
    return latents + dt * _combine_guidance(schedule, velocity, state.guidance), kv

  no_kv = jax.tree.map(
    lambda x: jnp.zeros(x.shape, x.dtype),
    jax.eval_shape(lambda: evaluate(0, (state.latents, None))[1]),
  )
  latents, kv = jax.lax.fori_loop(0, last + 1, evaluate, (state.latents, no_kv))
  finished = latents[:, :chunk]
  # The sink stays, the oldest cached chunk leaves, the finished one joins (axis 2: tokens).
  cache = jax.tree.map(
    lambda cached, new: jnp.concatenate(
      [cached[:, :, :1], cached[:, :, 1 + chunk :], new[:, :, :chunk]], axis=2
    ),
    state.cache,
    kv,
  )
  fresh = chunk_noise(state.rng, s + 1, (batch, chunk, latent_dim))
  latents = jnp.concatenate([latents[:, chunk:], fresh], axis=1)
  return MotionState(latents, cache, s + 1, state.rng, state.acting, state.guidance), finished


def sample_motion(
  model: MotionTransformer,
  params,
  audio_features,
  reference,
  rng,
  schedule: RollingSchedule,
  num_frames: int,
  acting=None,
  guidance=(1.0, 1.0),
):
  """Motion latents [B, num_frames, latent_dim]: every advance of the cached sampler in one scan.

  `audio_features` [B, front + num_frames + back, D] must be encoded from the waveform padded with
  `padded_audio_frames(...)` frames of silence, as in training where audio outside a clip is silent.
  (`inference.stream` runs the same advances one at a time, as audio arrives.)
  """
  layout = _Layout(model, schedule, num_frames)
  window = audio_window_frames(model, schedule)

  def advance(state, s):
    # Advance s reads from frame (s - in_flight + 1) * chunk - radius: feature s * chunk here.
    audio = jax.lax.dynamic_slice_in_dim(audio_features, s * layout.chunk, window, axis=1)
    return advance_motion(model, params, state, audio, schedule)

  state = init_motion(model, params, reference, rng, schedule, acting, guidance)
  _, finished = jax.lax.scan(advance, state, jnp.arange(layout.num_advances))
  in_flight, (batch, latent_dim) = schedule.chunks_in_flight, reference.shape
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
  acting=None,
  guidance=(1.0, 1.0),
):
  """The same samples as `sample_motion`, recomputing the whole history at every step (no cache)."""
  layout = _Layout(model, schedule, num_frames)
  chunk, in_flight = layout.chunk, schedule.chunks_in_flight
  batch, latent_dim = reference.shape
  audio, ref = _replicate(schedule, audio_features), _replicate(schedule, reference)
  keep = _audio_keep(schedule, batch)
  branch_acting = _branch_acting(model, schedule, acting, batch)
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
        _replicate(schedule, latents),
        _replicate(schedule, t),
        audio,
        audio_keep=keep,
        acting=_frames_acting(branch_acting, latents.shape[1]),
        reference=ref,
        frame_offset=buffer_offset,
        audio_offset=-layout.audio_front_pad,
      )
      step = jnp.where(
        active[None, :, None],
        dt[None, :, None] * _combine_guidance(schedule, velocity, _guidance(guidance)),
        0,
      )
      return latents + step

    return jax.lax.fori_loop(0, schedule.steps_per_advance, denoise, latents), None

  latents, _ = jax.lax.scan(advance, latents, jnp.arange(layout.num_advances))
  return latents[:, (in_flight - 1) * chunk :][:, :num_frames]
