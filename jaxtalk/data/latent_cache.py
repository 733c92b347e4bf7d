"""Stage 2's motion latents on disk: encoded once per (training data, stage-1 encoder), then read.

Layout, in `<root>/<key>/` (root: motion_train.latent_cache_dir, by default `<data dir>/latents`):

    part-<i>-of-<n>.bin           raw rows [frames, latent_dim] of clips i, i + n, i + 2n, ...
    part-<i>-of-<n>.lengths.npy   int64 frames of each of those clips
    manifest.json                 key, what it was computed from, dtype, latent_dim, the parts

The key is a hash of what decides the latents: the training shards (names, sizes, modification
times), the encoder's parameters (a hash of their bytes) and its config. Another stage-1 checkpoint
or other data is another key, so another folder; old folders are left in place, since another run
on the same data (a stage-1 checkpoint being compared, a second experiment) may still use them.

A run of n processes builds a cache together: process i encodes clips i::n into part i, all wait,
then process 0 writes the manifest. The manifest is written last, so a folder without one (a build
that was killed) is never read but built again, over what it left; parts of a killed build on
another number of processes stay there unused. Any number of processes can read a cache. Two runs
must not build the same cache at the same time: start the second once the first has logged
"encoded N clips".

Parts are raw files memory-mapped by numpy rather than ArrayRecord: a window is a contiguous run of
rows of one clip, so reading it is one slice of the page cache, with no record to parse or
decompress, and bfloat16 rows need no serialiser (`.npy` cannot record that dtype).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.errors import UserError
from jaxtalk.parallel.distributed import gather_from_processes, wait_for_all
from jaxtalk.training.progress import format_duration, say

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG_KEY = "motion_train.latent_cache_dir"

# encode(i, n): the latents [frames, latent_dim] of clips i, i + n, i + 2n, ... in order.
Encode = Callable[[int, int], Iterator[np.ndarray]]


def key_inputs(train_paths, encoder_params, encoder_config: dict) -> dict[str, Any]:
  """What the latents are a function of, as JSON: a changed shard or parameter changes it.

  Shards are named by file name, so a moved data folder keeps its cache; a copied one whose
  modification times changed is encoded again.
  """
  shards = []
  for path in train_paths:
    stat = os.stat(path)
    shards.append(
      {"name": os.path.basename(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    )
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(encoder_params)[0]:
    array = np.asarray(leaf)
    digest.update(f"{jax.tree_util.keystr(path)} {array.dtype} {array.shape}".encode())
    digest.update(array.tobytes())
  return {
    "format_version": FORMAT_VERSION,
    "shards": shards,
    "encoder_params_sha256": digest.hexdigest(),
    "encoder_config": encoder_config,
  }


def cache_key(inputs: dict[str, Any]) -> str:
  return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


class LatentCache:
  """Clip index -> its latents [T, latent_dim], read from the memory-mapped parts of a cache."""

  def __init__(self, directory: Path):
    self.directory = Path(directory)
    self.manifest = json.loads((self.directory / MANIFEST).read_text())
    dtype, dim = jnp.dtype(self.manifest["dtype"]), self.manifest["latent_dim"]
    self._parts = []  # (rows, offsets of each clip's first row)
    for part in self.manifest["parts"]:
      lengths = np.load(self.directory / f"{part['name']}.lengths.npy")
      path = self.directory / f"{part['name']}.bin"
      size = path.stat().st_size if path.is_file() else None
      if len(lengths) != part["clips"] or size != part["frames"] * dim * dtype.itemsize:
        raise UserError(
          f"latent cache {self.directory} is damaged ({path.name} does not match its manifest); "
          "delete that folder to encode the clips again"
        )
      # numpy cannot map an empty file; a process that had no clips wrote one.
      rows = (
        np.memmap(path, dtype, mode="r", shape=(part["frames"], dim))
        if part["frames"]
        else np.zeros((0, dim), dtype)
      )
      self._parts.append((rows, np.concatenate([[0], np.cumsum(lengths)])))

  def __len__(self) -> int:
    return self.manifest["clip_count"]

  def __getitem__(self, clip_index: int) -> np.ndarray:
    if not 0 <= clip_index < len(self):
      raise IndexError(f"clip {clip_index} is not in a latent cache of {len(self)} clips")
    rows, offsets = self._parts[clip_index % len(self._parts)]
    local = clip_index // len(self._parts)
    return np.asarray(rows[offsets[local] : offsets[local + 1]])


def open_or_build(root, inputs: dict[str, Any], encode: Encode) -> LatentCache:
  """The cache of `inputs` under `root`, encoded first (`encode`, shared by the processes) unless
  a complete one is there. Every process of the run calls it."""
  key = cache_key(inputs)
  directory = Path(root) / key
  keys = gather_from_processes(key)
  if len(set(keys)) > 1:
    raise UserError(
      f"the processes see different training shards or stage-1 parameters (latent cache keys "
      f"{sorted(set(keys))}); give every host the same data folder and workdir"
    )
  if all(gather_from_processes(_is_complete(directory, key))):
    cache = _agreed(lambda: LatentCache(directory))
    say(f"reusing latent cache {key} ({len(cache)} clips) in {directory}")
    return cache
  _build(directory, key, inputs, encode)
  return _agreed(lambda: LatentCache(directory))


def _is_complete(directory: Path, key: str) -> bool:
  try:
    return json.loads((directory / MANIFEST).read_text()).get("key") == key
  except (OSError, ValueError):
    return False


def _agreed(make: Callable[[], Any]) -> Any:
  """make() on every process; a UserError on any one is raised on all, so none is left waiting
  for the others at the next collective."""
  try:
    value, problem = make(), None
  except UserError as e:
    value, problem = None, str(e)
  problems = [p for p in gather_from_processes(problem) if p]
  if problems:
    raise UserError(problems[0])
  return value


def _build(directory: Path, key: str, inputs: dict[str, Any], encode: Encode) -> None:
  index, count = jax.process_index(), jax.process_count()
  name = f"part-{index:05d}-of-{count:05d}"
  say(f"encoding the training clips into latent cache {key} in {directory}")
  started = time.perf_counter()
  _agreed(lambda: _prepare(directory))
  # A corrupt shard met by one process must stop all of them, not leave the others waiting.
  parts = gather_from_processes(_agreed(lambda: _write_part(directory, name, encode(index, count))))
  if not any(p["clips"] for p in parts):
    raise UserError(f"no clips to encode into latent cache {key}; the training shards are empty")
  if index == 0:
    _write_manifest(directory, key, inputs, parts)
  wait_for_all(f"latent cache {key} written")
  clips, frames = sum(p["clips"] for p in parts), sum(p["frames"] for p in parts)
  say(
    f"encoded {clips} clips ({frames} frames) into latent cache {key} on {count} process(es) "
    f"in {format_duration(time.perf_counter() - started)}"
  )


def _prepare(directory: Path) -> None:
  try:
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / f"probe-{os.getpid()}"
    probe.touch()
    probe.unlink()
  except OSError as e:
    raise UserError(
      f"cannot write the latent cache in {directory.parent} ({e.strerror}); set {CONFIG_KEY} to "
      "a writable folder that every host sees"
    ) from None


def _write_part(directory: Path, name: str, clip_latents: Iterator[np.ndarray]) -> dict[str, Any]:
  """Writes the latents of this process's clips as part `name`; returns what the manifest says of
  it. The rows are streamed to disk, never all held in memory."""
  # Named by the part alone: a build killed and started again overwrites what it left.
  temp = directory / f"{name}.bin.partial"
  lengths, dtype, dim = [], None, None
  with temp.open("wb") as out:
    for latents in clip_latents:
      lengths.append(len(latents))
      dtype, dim = latents.dtype.name, latents.shape[1]
      out.write(np.ascontiguousarray(latents).tobytes())
  np.save(directory / f"{name}.lengths.npy", np.asarray(lengths, np.int64))
  os.replace(temp, directory / f"{name}.bin")
  return {"name": name, "clips": len(lengths), "frames": sum(lengths), "dtype": dtype, "dim": dim}


def _write_manifest(directory: Path, key: str, inputs: dict[str, Any], parts: list[dict]) -> None:
  """Writes the manifest (under a temporary name, renamed) once every part is in place."""
  encoded = [p for p in parts if p["clips"]]
  manifest = {
    "key": key,
    "inputs": inputs,
    "clip_count": sum(p["clips"] for p in parts),
    "frame_count": sum(p["frames"] for p in parts),
    "latent_dim": encoded[0]["dim"],
    "dtype": encoded[0]["dtype"],
    "parts": [{k: p[k] for k in ("name", "clips", "frames")} for p in parts],
  }
  temp = directory / f"{MANIFEST}.tmp"
  temp.write_text(json.dumps(manifest, indent=1))
  os.replace(temp, directory / MANIFEST)
