"""The one model every session shares, and how the event loop runs blocking work without blocking.

Model calls run in a worker thread so the event loop keeps serving every socket meanwhile; one
asyncio lock lets one call at a time use the model (its compiled programs and device memory are
shared), in the order sessions asked, so sessions take turns a push at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from jaxtalk.inference.generate import SampleOptions
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
  """A `TalkingHead` (anything with `.stream(portrait, options)` and its config) and its lock."""

  def __init__(self, model):
    self.model = model
    self.image_size = model.image_size
    self._options = lambda seed: SampleOptions.from_config(model.config.sample, seed=seed)
    self._options(0)  # a config's bad sampling options are refused now, not in every session
    self._lock = asyncio.Lock()

  async def compute(self, function: Callable[..., T], *args) -> T:
    """Runs a call that uses the model, after every model call asked for before it."""
    async with self._lock:
      return await in_thread(function, *args)

  async def open_stream(self, portrait: np.ndarray, seed: int):
    return await self.compute(self.model.stream, portrait, self._options(seed))

  async def unfamiliar_portrait(self, portrait: np.ndarray) -> str | None:
    """The model's one-line warning for a portrait far from its training faces, else None."""
    return await self.compute(self.model.unfamiliar_portrait, portrait, self._options(0))


def warm_up(model, portrait: np.ndarray) -> None:
  """Compiles what sessions and uploads run, on a second of silence, before any client waits.

  Blocking: call it before the server starts."""
  options = SampleOptions.from_config(model.config.sample)
  stream = model.stream(portrait, options)
  stream.push(np.zeros(SAMPLE_RATE, np.float32))
  stream.finish()
  model.unfamiliar_portrait(portrait, options)
