"""Sampling speed through the streaming engine: a whole file, a live microphone, a fresh process.

- `file_speed`: a file pushed at once, warm; the motion and the renderer's calls (a chunk of
  frames each, as the engine makes them) also timed apart.
- `live_speed`: the audio pushed a frame (40 ms) at a time as a microphone delivers it. The clock
  is simulated: block i arrives at (i + 1) * 40 ms, and is pushed then, or when the push before
  it is done if that is later; pushes are timed for real. (Waiting for audio leaves the CPU idle,
  so sleeping through it would measure the same, only slower.) First-frame latency runs from the
  first sample's arrival to the first frame out; the look-ahead is the part of it spent waiting
  for audio the frame needs, and what remains is compute.
- `startup`: what a new process pays before its first frame, with an empty and with a filled disk
  compilation cache, measured in child processes (`python -m jaxtalk.bench.streaming`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from jaxtalk.bench.timing import timed
from jaxtalk.inference.generate import SampleOptions, TalkingHead
from jaxtalk.timebase import FPS, SAMPLES_PER_FRAME, frames_of


def file_speed(model: TalkingHead, portrait, waveform, options: SampleOptions) -> dict:
  """Warm seconds for a whole file, of its motion and of its rendering, and the first call's
  compile seconds."""
  fastest = lambda fn: min(timed(fn)[0] for _ in range(2))
  generate = lambda: model.generate(portrait, waveform, options)
  cold, _ = timed(generate)
  total = fastest(generate)
  latents = model.motion_latents(waveform, portrait, options)
  motion = fastest(lambda: model.motion_latents(waveform, portrait, options))
  by_chunk = dataclasses.replace(options, batch_frames=model.models.motion.chunk_size)
  render = fastest(lambda: list(model.render_frames(portrait, latents, by_chunk)))
  frames = frames_of(len(waveform))
  audio_seconds = frames / FPS
  return {
    "frames": frames,
    "audio_seconds": audio_seconds,
    "seconds": total,
    "motion_seconds": motion,
    "render_seconds": render,
    "compile_seconds": max(cold - total, 0.0),
    "frames_per_second": frames / total,
    "rtf_motion": motion / audio_seconds,
    "rtf_render": render / audio_seconds,
    "rtf_total": total / audio_seconds,
  }


def live_speed(model: TalkingHead, portrait, waveform, options: SampleOptions) -> dict:
  """A live stream, a frame of audio per push (see the module docstring); the model is warm."""
  session = model.stream(portrait, options)
  frame_seconds = 1 / FPS
  clock, busy, chunk_latencies, first_frame = 0.0, 0.0, [], None
  for i in range(frames_of(len(waveform))):
    arrival = (i + 1) * frame_seconds
    clock = max(clock, arrival)
    seconds, frames = timed(
      lambda i=i: session.push(waveform[i * SAMPLES_PER_FRAME :][:SAMPLES_PER_FRAME])
    )
    clock += seconds
    busy += seconds
    if len(frames):
      chunk_latencies.append(clock - arrival)
      first_frame = clock if first_frame is None else first_frame
  layout = session.motion.layout
  # Frame 0 can be made once its own 40 ms and the look-ahead after it have arrived.
  audio_wait = (1 + layout.lookahead_frames) * frame_seconds
  audio_seconds = frames_of(len(waveform)) / FPS
  latencies = np.asarray(chunk_latencies)
  return {
    "push_ms": 1000 * frame_seconds,
    "chunk_ms": 1000 * layout.chunk * frame_seconds,
    "lookahead_ms": layout.lookahead_ms,
    "first_frame_seconds": first_frame,
    "first_frame_after_lookahead_seconds": first_frame - audio_wait,
    "rtf": busy / audio_seconds,
    "chunk_latency_p50_seconds": float(np.percentile(latencies, 50)),
    "chunk_latency_p95_seconds": float(np.percentile(latencies, 95)),
    "chunk_latency_max_seconds": float(latencies.max()),
  }


def startup(checkpoint: str | None) -> dict:
  """A fresh process's seconds to its first frames (1 s of audio), and the programs it compiled,
  with an empty disk cache and then with the one the first process filled."""
  with tempfile.TemporaryDirectory() as cache:
    runs = [_startup_in_child(checkpoint, cache) for _ in range(2)]
  return {"empty_cache": runs[0], "disk_cache": runs[1]}


def _startup_in_child(checkpoint: str | None, cache: str) -> dict:
  command = [sys.executable, "-m", "jaxtalk.bench.streaming"]
  if checkpoint:
    command += ["--checkpoint", checkpoint]
  env = {**os.environ, "JAXTALK_CACHE_DIR": cache}
  done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
  if done.returncode != 0:
    raise RuntimeError(f"the startup measurement failed: {done.stderr.strip()[-2000:]}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def _child_main(argv) -> None:
  """In a fresh process: load the model, and time its first and second second of audio."""
  import argparse

  parser = argparse.ArgumentParser()
  parser.add_argument("--checkpoint")
  checkpoint = parser.parse_args(argv).checkpoint

  from jaxtalk.bench.__main__ import load_model
  from jaxtalk.bench.sampling import synthtalk_inputs
  from jaxtalk.inference.compilation import counting_compiles, enable_persistent_cache

  enable_persistent_cache()
  config, params, _ = load_model(checkpoint)
  model = TalkingHead(config, params)
  portrait, waveform = synthtalk_inputs(config, 1.0)
  with counting_compiles() as count:
    start = time.perf_counter()
    model.generate(portrait, waveform)
    first = time.perf_counter() - start
  warm, _ = timed(lambda: model.generate(portrait, waveform))
  print(
    json.dumps(
      {
        "compile_seconds": max(first - warm, 0.0),
        "programs_compiled": count.compiled,
        "programs_loaded": count.loaded,
      }
    )
  )


if __name__ == "__main__":
  _child_main(sys.argv[1:])
