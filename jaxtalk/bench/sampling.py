"""Sampling speed: motion and rendering per second of audio, first-frame latency, and the
rolling KV-cache motion sampler against recomputing the whole history at every step."""

from __future__ import annotations

import functools
import time

import jax
import numpy as np

from jaxtalk.bench.timing import Timing, measure, timed
from jaxtalk.data.synthtalk import face, motion, speech
from jaxtalk.inference.generate import SampleOptions, TalkingHead
from jaxtalk.inference.motion_sampler import (
  padded_audio_frames,
  sample_motion,
  sample_motion_recompute,
)
from jaxtalk.timebase import FPS, SAMPLES_PER_FRAME


def synthtalk_inputs(config, seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(portrait uint8 [S, S, 3], 16 kHz speech of `seconds`): a SynthTalk face at rest and an
  utterance, so the benchmark needs no files."""
  rest = np.zeros(len(motion.MOTION_PARAMS), np.float32)
  rest[motion.MOTION_PARAMS.index("mouth_width")] = motion.REST_WIDTH
  portrait = face.render_face(
    face.sample_identity(np.random.default_rng(seed)), rest, config.data.image_size
  )
  samples = int(round(seconds * FPS)) * SAMPLES_PER_FRAME
  return portrait, speech.synthesize_utterance(seed, samples).audio


def _render_batch_seconds(model: TalkingHead, portrait, latents, options) -> list[float]:
  """Seconds each rendered batch took, in order (frames come back as numpy, so each is done)."""
  seconds, start = [], time.perf_counter()
  for _ in model.render_frames(portrait, latents, options):
    now = time.perf_counter()
    seconds.append(now - start)
    start = now
  return seconds


def sampling_speed(model: TalkingHead, portrait, waveform, options: SampleOptions) -> dict:
  """Warm seconds of motion sampling and of rendering for the whole waveform, and their compile
  seconds; with frames per second and real-time factors (generation seconds / audio seconds)."""
  motion_timing, latents = measure(lambda: model.motion_latents(waveform, portrait, options))
  # Rendering a whole video twice to time its compilation would double the benchmark: the first
  # batch is rendered cold on its own, and compared with the same batch inside the warm pass.
  cold_first_batch = _render_batch_seconds(
    model, portrait, latents[: options.batch_frames], options
  )[0]
  batch_seconds = _render_batch_seconds(model, portrait, latents, options)
  render = Timing(
    seconds=sum(batch_seconds), compile_seconds=max(cold_first_batch - batch_seconds[0], 0.0)
  )
  audio_seconds = len(latents) / FPS
  total = motion_timing.seconds + render.seconds
  return {
    "frames": len(latents),
    "audio_seconds": audio_seconds,
    "motion_seconds": motion_timing.seconds,
    "motion_compile_seconds": motion_timing.compile_seconds,
    "render_seconds": render.seconds,
    "render_compile_seconds": render.compile_seconds,
    "frames_per_second": len(latents) / total,
    "rtf_motion": motion_timing.seconds / audio_seconds,
    "rtf_render": render.seconds / audio_seconds,
    "rtf_total": total / audio_seconds,
  }


def first_frame_latency(model: TalkingHead, portrait, waveform, options: SampleOptions) -> float:
  """Seconds from the waveform to the first batch of rendered frames, warm.

  The motion sampler is one scan over the whole audio, so this includes the motion of all of it
  plus rendering one batch.
  """

  def first_batch():
    frames = model.render_frames(
      portrait, model.motion_latents(waveform, portrait, options), options
    )
    batch = next(frames)
    frames.close()
    return batch

  timed(first_batch)  # compiles, or reuses what `sampling_speed` compiled for the same shapes
  return timed(first_batch)[0]


# Warm runs timed per sampler: the cached one is quick and so noisier; the recompute one runs
# for long enough (up to a minute at 16 s of demo audio) that one run is a stable measurement.
_REPEATS = {"kv_cache": 3, "recompute": 1}


def sampler_comparison(
  model: TalkingHead, options: SampleOptions, lengths_seconds, seed: int = 0
) -> list[dict]:
  """KV-cache sampler vs recompute sampler on identical audio features, for each audio length.

  The cached sampler's cost grows linearly with the audio, the recompute sampler's quadratically
  (every step attends over the whole history). max_abs_difference checks they computed the same.
  """
  schedule = options.schedule
  motion_model = model.models.motion
  samplers = {
    name: jax.jit(functools.partial(fn, motion_model), static_argnums=(4, 5))
    for name, fn in (("kv_cache", sample_motion), ("recompute", sample_motion_recompute))
  }
  encode_audio = jax.jit(model.models.audio_encoder.apply)
  params = model.params
  spf = SAMPLES_PER_FRAME
  rows = []
  for seconds in lengths_seconds:
    num_frames = int(round(seconds * FPS))
    front, back = padded_audio_frames(motion_model, schedule, num_frames)
    # Silence around the speech, as `TalkingHead.motion_latents` pads it.
    waveform = np.zeros((front + num_frames + back) * spf, np.float32)
    speech_audio = speech.synthesize_utterance(seed, num_frames * spf).audio
    waveform[front * spf : (front + num_frames) * spf] = speech_audio
    features = encode_audio({"params": params["audio_encoder"]}, waveform[None])
    reference = jax.random.normal(jax.random.key(seed), (1, motion_model.latent_dim))
    rng = jax.random.key(seed + 1)
    row, outputs = {"audio_seconds": float(seconds), "frames": num_frames}, {}
    for name, sampler in samplers.items():
      run = functools.partial(
        sampler, params["motion"], features, reference, rng, schedule, num_frames
      )
      timing, outputs[name] = measure(run, _REPEATS[name])
      row[f"{name}_seconds"], row[f"{name}_compile_seconds"] = (
        timing.seconds,
        timing.compile_seconds,
      )
    row["recompute_over_kv_cache"] = row["recompute_seconds"] / row["kv_cache_seconds"]
    row["max_abs_difference"] = float(
      np.max(np.abs(np.asarray(outputs["kv_cache"]) - np.asarray(outputs["recompute"])))
    )
    rows.append(row)
  return rows
