"""Wall-clock timing of jitted work, with compilation measured apart from running.

JAX dispatches asynchronously, so every timed call blocks until its results are computed; a call
that only enqueued work would look instant.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax


@dataclasses.dataclass(frozen=True)
class Timing:
  seconds: float  # one warm call, the fastest of the repeats
  compile_seconds: float  # the first call minus a warm one: tracing and compiling


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
  """(seconds until fn's results are ready, the results)."""
  start = time.perf_counter()
  result = jax.block_until_ready(fn())
  return time.perf_counter() - start, result


def measure(fn: Callable[[], Any], repeats: int = 2) -> tuple[Timing, Any]:
  """Times a first (compiling) call of fn and `repeats` warm ones; (Timing, the last results)."""
  cold, result = timed(fn)
  warm = []
  for _ in range(repeats):
    seconds, result = timed(fn)
    warm.append(seconds)
  return Timing(seconds=min(warm), compile_seconds=max(cold - min(warm), 0.0)), result
