"""The one model every session shares, and how the event loop runs blocking work without blocking.

Model calls run in a worker thread so the event loop keeps serving every socket meanwhile; one
asyncio lock lets one call at a time use the model (its compiled programs and device memory are
shared), in the order sessions asked, so sessions take turns a push at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from jaxtalk.inference.generate import SampleOptions
from jaxtalk.serve import protocol
from jaxtalk.timebase import SAMPLE_RATE

T = TypeVar("T")


async def in_thread(function: Callable[..., T], *args) -> T:
  """`function(*args)` in the default thread pool; awaiting it never blocks the event loop.

  A cancelled caller still waits for the call to finish before the cancellation goes on: a thread
  cannot be stopped, and whatever the caller does next (abort a stream, close its video) must not
  run alongside it.
  """
  future = asyncio.get_running_loop().run_in_executor(None, function, *args)
  try:
    return await asyncio.shield(future)
  except asyncio.CancelledError:
    await asyncio.wait([future])
    raise


class Engine:
  """A `TalkingHead` (anything with `.stream(portrait, options)`, its config and its models) and
  its lock."""

  def __init__(self, model):
    self.model = model
    self.image_size = model.image_size
    self.emotions = tuple(model.models.motion.emotions)
    # A config's bad sampling options are refused now, not in every session.
    self.defaults = SampleOptions.from_config(model.config.sample)
    self._lock = asyncio.Lock()

  def options(self, start: protocol.Start) -> SampleOptions:
    """A start message's sampling options; UserError for controls the model cannot take (an
    emotion it does not know)."""
    options = SampleOptions.from_config(
      self.model.config.sample,
      seed=start.seed,
      emotion=start.emotion,
      emotion_intensity=start.intensity,
      pose_amplitude=start.pose_amplitude,
      blink_rate=start.blink_rate,
      cfg_scale=start.audio_guidance,
      emotion_cfg_scale=start.emotion_guidance,
    )
    options.check_controls(self.emotions)
    return options

  def controls(self) -> dict:
    return protocol.controls(
      self.emotions, self.defaults.cfg_scale, self.defaults.emotion_cfg_scale
    )

  async def compute(self, function: Callable[..., T], *args) -> T:
    """Runs a call that uses the model, after every model call asked for before it."""
    async with self._lock:
      return await in_thread(function, *args)

  async def open_stream(self, portrait: np.ndarray, options: SampleOptions):
    return await self.compute(self.model.stream, portrait, options)

  async def unfamiliar_portrait(self, portrait: np.ndarray) -> str | None:
    """The model's one-line warning for a portrait far from its training faces, else None."""
    return await self.compute(self.model.unfamiliar_portrait, portrait, self.defaults)


def warm_up(model, portrait: np.ndarray) -> None:
  """Compiles what sessions and uploads run, on a second of silence, before any client waits.

  Blocking: call it before the server starts."""
  options = SampleOptions.from_config(model.config.sample)
  variants = [options]
  emotions = model.models.motion.emotions
  # A given emotion that is guided adds a branch to the sampler: a program of its own. The
  # controls' and the guidance scales' values are inputs, not programs; a guidance a client turns
  # on or off (1 against any other value) compiles when it comes.
  if emotions and options.emotion_cfg_scale != 1:
    variants.append(dataclasses.replace(options, emotion=emotions[0]))
  for variant in variants:
    stream = model.stream(portrait, variant)
    stream.push(np.zeros(SAMPLE_RATE, np.float32))
    stream.finish()
  model.unfamiliar_portrait(portrait, options)
