"""Compile once: JAX's on-disk compilation cache for the commands, and a count of compilations.

The streaming engine's programs have one shape per model and schedule, so a process compiles them
once; the persistent cache makes the *next* process load them instead. It lives in a per-user
cache folder (`$JAXTALK_CACHE_DIR`, else `$XDG_CACHE_HOME/jaxtalk/xla`, else
`~/.cache/jaxtalk/xla`); `JAXTALK_CACHE_DIR=off` turns it off. The commands enable it; the library
does not, so importing jaxtalk never writes to a user's home.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

import jax

CACHE_ENV = "JAXTALK_CACHE_DIR"
# jax's own event names: one program made ready for the backend (compiled, or read back from the
# disk cache), and one program read back.
_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT = "/jax/compilation_cache/cache_hits"


def cache_dir() -> Path | None:
  """Where the compilation cache lives, or None when it is turned off."""
  chosen = os.environ.get(CACHE_ENV)
  if chosen == "off":
    return None
  if chosen:
    return Path(chosen)
  base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
  return Path(base) / "jaxtalk" / "xla"


def enable_persistent_cache() -> Path | None:
  """Turns jax's on-disk compilation cache on (see the module docstring); returns its folder."""
  folder = cache_dir()
  if folder is None:
    return None
  folder.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(folder))
  # Every program of a sampling run is worth keeping: most compile in well under jax's default
  # threshold of 1 s each, but there are many of them.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  return folder


@dataclasses.dataclass
class CompileCount:
  """Programs made ready for the backend, how many of them came from the disk cache, and the time
  that took."""

  programs: int = 0
  loaded: int = 0
  seconds: float = 0.0

  @property
  def compiled(self) -> int:
    """Programs the compiler built from scratch."""
    return self.programs - self.loaded


@contextlib.contextmanager
def counting_compiles():
  """Counts the compilations inside the block (all threads): `with counting_compiles() as n:`."""
  count = CompileCount()

  def on_duration(event: str, seconds: float, **_):
    if event == _BACKEND_COMPILE:
      count.programs += 1
      count.seconds += seconds

  def on_event(event: str, **_):
    if event == _CACHE_HIT:
      count.loaded += 1

  jax.monitoring.register_event_duration_secs_listener(on_duration)
  jax.monitoring.register_event_listener(on_event)
  try:
    yield count
  finally:
    jax.monitoring.unregister_event_duration_listener(on_duration)
    jax.monitoring.unregister_event_listener(on_event)
