"""Attention mask objects: what each query may see, described by structure rather than a dense matrix.

A mask is a small pytree (static structure + traced offsets) so that one mask type serves training
(whole sequences) and the rolling sampler (a few chunks of queries against a cache of keys, with offsets
that change every step inside a `lax` loop). Each mask answers three questions:

- `dense()` materialises the boolean matrix for the plain `jnp` reference, the source of truth;
- `intervals()` gives, per query row, the visible keys as two disjoint half-open index ranges. Every
  mask here sees a contiguous run of keys plus at most a prefix (the sink), so two ranges describe
  it exactly in O(length) instead of O(length^2). Kernels derive from them which key blocks a query
  block can reach (`block_map.py`) and rebuild the mask of a partially visible block in registers.
  They are computed with `jnp`, so traced offsets work.
- `key_reach(rows)` / `query_reach(keys)` bound, from the static fields alone, how far a block of
  consecutive queries reaches into the keys and a block of keys into the queries, whatever the
  offsets. A kernel's grid must have a static size: these bounds size its inner axis, so that it
  walks only as many blocks as the mask can reach, O(length * window) rather than O(length^2).

Positions: for sequence masks a token's *frame index* is `offset + (index - prefix)`. Negative frame
indices mark slots that do not exist yet (an empty KV cache at the start of sampling) and are never
visible.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import struct


def _key_padding(kv_lengths, k_len):
  """[B, 1, 1, K] visibility from per-example key lengths, or None."""
  if kv_lengths is None:
    return None
  return (jnp.arange(k_len)[None, :] < kv_lengths[:, None])[:, None, None, :]


def _key_limit(kv_lengths, k_len):
  """Exclusive bound of the keys that exist: [B, 1] with per-example lengths, else a scalar."""
  return k_len if kv_lengths is None else jnp.minimum(kv_lengths, k_len)[:, None]


def _stack_intervals(lo0, hi0, lo1, hi1, limit, q_rows):
  """Clip two [.., Q] key ranges to [0, limit), empty ones to lo == hi -> int32 [B|1, Q, 4]."""

  def clip(lo, hi):
    lo = jnp.maximum(jnp.broadcast_to(lo, (q_rows,)), 0)
    hi = jnp.minimum(hi, limit)
    return lo, jnp.maximum(hi, lo)

  parts = jnp.broadcast_arrays(*clip(lo0, hi0), *clip(lo1, hi1))
  out = jnp.stack(parts, axis=-1).astype(jnp.int32)
  return out if out.ndim == 3 else out[None]


def _combine(visible, kv_lengths, k_len):
  """Broadcast a [Q, K] mask to [B|1, 1, Q, K] and apply key padding."""
  visible = visible[None, None]
  padding = _key_padding(kv_lengths, k_len)
  return visible if padding is None else visible & padding


@struct.dataclass
class FullMask:
  """Every query sees every key (optionally only the first `kv_lengths[b]` keys of example b)."""

  kv_lengths: jnp.ndarray | None = None

  def dense(self, q_len: int, k_len: int) -> jnp.ndarray:
    return _combine(jnp.ones((q_len, k_len), bool), self.kv_lengths, k_len)

  def intervals(self, q_rows: int, k_len: int) -> jnp.ndarray:
    limit = _key_limit(self.kv_lengths, k_len)
    return _stack_intervals(0, limit, 0, 0, limit, q_rows)

  def key_reach(self, rows: int) -> tuple[int, int | None]:
    """(k, n): `rows` consecutive query rows see at most the first k keys and one run of n
    consecutive keys between them, whatever the offsets; n None: no bound."""
    return 0, None

  def query_reach(self, keys: int) -> int | None:
    """At most how many consecutive query rows see any of `keys` consecutive keys; None: no bound."""
    return None


@struct.dataclass
class BlockCausalMask:
  """Full attention inside a chunk of `chunk_size` frames, causal across chunks.

  `q_prefix` / `k_prefix` leading tokens are the always-visible sink (the reference motion): prefix
  keys are seen by every query, prefix queries see only prefix keys. `lookback_chunks`, when set, limits
  how many earlier chunks a frame sees; this bounds the receptive field per layer so a fixed-size KV
  cache reproduces exactly what the model computes on the whole sequence.
  """

  chunk_size: int = struct.field(pytree_node=False)
  q_prefix: int = struct.field(pytree_node=False, default=0)
  k_prefix: int = struct.field(pytree_node=False, default=0)
  lookback_chunks: int | None = struct.field(pytree_node=False, default=None)
  q_offset: jnp.ndarray | int = 0
  k_offset: jnp.ndarray | int = 0
  kv_lengths: jnp.ndarray | None = None

  def dense(self, q_len: int, k_len: int) -> jnp.ndarray:
    qi = jnp.arange(q_len)
    kj = jnp.arange(k_len)
    q_is_prefix = qi < self.q_prefix
    k_is_prefix = kj < self.k_prefix
    q_chunk = (self.q_offset + qi - self.q_prefix) // self.chunk_size
    k_frame = self.k_offset + kj - self.k_prefix
    k_chunk = k_frame // self.chunk_size
    frame_visible = (k_frame[None, :] >= 0) & (k_chunk[None, :] <= q_chunk[:, None])
    if self.lookback_chunks is not None:
      frame_visible &= k_chunk[None, :] >= q_chunk[:, None] - self.lookback_chunks
    visible = jnp.where(k_is_prefix[None, :], True, frame_visible & ~q_is_prefix[:, None])
    return _combine(visible, self.kv_lengths, k_len)

  def intervals(self, q_rows: int, k_len: int) -> jnp.ndarray:
    """Range 0: the prefix keys. Range 1: the frames of the chunks a query sees."""
    qi = jnp.arange(q_rows)
    q_chunk = (self.q_offset + qi - self.q_prefix) // self.chunk_size
    first_frame = (
      0
      if self.lookback_chunks is None
      else jnp.maximum((q_chunk - self.lookback_chunks) * self.chunk_size, 0)
    )
    end_frame = (q_chunk + 1) * self.chunk_size
    to_key = self.k_prefix - self.k_offset  # key index of frame f is f + to_key
    lo = jnp.maximum(first_frame + to_key, self.k_prefix)
    hi = jnp.where(qi < self.q_prefix, lo, end_frame + to_key)
    limit = _key_limit(self.kv_lengths, k_len)
    return _stack_intervals(0, jnp.minimum(self.k_prefix, k_len), lo, hi, limit, q_rows)

  def _chunks_spanned(self, frames: int) -> int:
    """At most how many chunks `frames` consecutive frames touch, wherever they start."""
    return -(-(frames - 1) // self.chunk_size) + 1

  def key_reach(self, rows: int) -> tuple[int, int | None]:
    """The prefix, and the frames of the chunks the rows' chunks look back over (see FullMask)."""
    if self.lookback_chunks is None:
      return self.k_prefix, None
    return self.k_prefix, (self._chunks_spanned(rows) + self.lookback_chunks) * self.chunk_size

  def query_reach(self, keys: int) -> int | None:
    """The frames of the chunks that look back at the keys' chunks; every row sees the prefix."""
    if self.lookback_chunks is None or self.k_prefix:
      return None
    return (self._chunks_spanned(keys) + self.lookback_chunks) * self.chunk_size


@struct.dataclass
class LocalAudioMask:
  """Video frame i sees audio features j with |j - c(i)| <= `radius`, c(i) = floor(i * num / den).

  `rate_num / rate_den` is the number of audio feature frames per video frame (1/1 when the audio
  encoder already runs at the video rate). `q_offset` / `k_offset` are the frame index of the first
  query and the audio index of the first key, so a slice of a long feature sequence keeps its alignment.
  """

  radius: int = struct.field(pytree_node=False)
  rate_num: int = struct.field(pytree_node=False, default=1)
  rate_den: int = struct.field(pytree_node=False, default=1)
  q_offset: jnp.ndarray | int = 0
  k_offset: jnp.ndarray | int = 0
  kv_lengths: jnp.ndarray | None = None

  def dense(self, q_len: int, k_len: int) -> jnp.ndarray:
    centre = ((self.q_offset + jnp.arange(q_len)) * self.rate_num) // self.rate_den
    audio_index = self.k_offset + jnp.arange(k_len)
    visible = jnp.abs(audio_index[None, :] - centre[:, None]) <= self.radius
    return _combine(visible, self.kv_lengths, k_len)

  def intervals(self, q_rows: int, k_len: int) -> jnp.ndarray:
    centre = ((self.q_offset + jnp.arange(q_rows)) * self.rate_num) // self.rate_den - self.k_offset
    limit = _key_limit(self.kv_lengths, k_len)
    return _stack_intervals(centre - self.radius, centre + self.radius + 1, 0, 0, limit, q_rows)

  def key_reach(self, rows: int) -> tuple[int, int | None]:
    """The rows' centres lie within ceil((rows - 1) * rate) of each other (see FullMask)."""
    return 0, -(-(rows - 1) * self.rate_num // self.rate_den) + 2 * self.radius + 1

  def query_reach(self, keys: int) -> int | None:
    """Rows whose centre is one of `keys + 2 * radius` consecutive values: as many rows as fit in
    that many audio frames at `rate_den / rate_num` video frames each, rounded up."""
    return -(-(keys + 2 * self.radius) * self.rate_den // self.rate_num)


Mask = FullMask | BlockCausalMask | LocalAudioMask
