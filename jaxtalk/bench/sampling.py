"""The benchmark's inputs, and the rolling KV-cache motion sampler against recomputing the whole
history at every step. (Sampling speed through the streaming engine: `bench.streaming`.)"""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxtalk.bench.timing import measure
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
        sampler,
        params["motion"],
        features,
        reference,
        rng,
        schedule,
        num_frames,
        guidance=options.guidance,
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
