"""Attention mask objects: what each query may see, described by structure rather than a dense matrix.

A mask is a small pytree (static structure + traced offsets) so that one mask type serves training
(whole sequences) and the rolling sampler (a window of queries against a cache of keys, with offsets
that change every step inside a `lax` loop). `dense()` materialises the boolean matrix for the plain
`jnp` reference; kernels read the structure to skip blocks the mask cannot reach.

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


@struct.dataclass
class BlockCausalMask:
  """Full attention inside a chunk of `chunk_size` frames, causal across chunks.

  `q_prefix` / `k_prefix` leading tokens are the always-visible sink (the reference motion): prefix
  keys are seen by every query, prefix queries see only prefix keys. `window_chunks`, when set, limits
  how many earlier chunks a frame sees; this bounds the receptive field per layer so a fixed-size KV
  cache reproduces exactly what the model computes on the whole sequence.
  """
  chunk_size: int = struct.field(pytree_node=False)
  q_prefix: int = struct.field(pytree_node=False, default=0)
  k_prefix: int = struct.field(pytree_node=False, default=0)
  window_chunks: int | None = struct.field(pytree_node=False, default=None)
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
    if self.window_chunks is not None:
      frame_visible &= k_chunk[None, :] >= q_chunk[:, None] - self.window_chunks
    visible = jnp.where(k_is_prefix[None, :], True, frame_visible & ~q_is_prefix[:, None])
    return _combine(visible, self.kv_lengths, k_len)


@struct.dataclass
class AudioWindowMask:
  """Video frame i sees audio features j with |j - c(i)| <= `window`, c(i) = floor(i * num / den).

  `rate_num / rate_den` is the number of audio feature frames per video frame (1/1 when the audio
  encoder already runs at the video rate). `q_offset` / `k_offset` are the frame index of the first
  query and the audio index of the first key, so a slice of a long feature sequence keeps its alignment.
  """
  window: int = struct.field(pytree_node=False)
  rate_num: int = struct.field(pytree_node=False, default=1)
  rate_den: int = struct.field(pytree_node=False, default=1)
  q_offset: jnp.ndarray | int = 0
  k_offset: jnp.ndarray | int = 0
  kv_lengths: jnp.ndarray | None = None

  def dense(self, q_len: int, k_len: int) -> jnp.ndarray:
    centre = ((self.q_offset + jnp.arange(q_len)) * self.rate_num) // self.rate_den
    audio_index = self.k_offset + jnp.arange(k_len)
    visible = jnp.abs(audio_index[None, :] - centre[:, None]) <= self.window
    return _combine(visible, self.kv_lengths, k_len)


Mask = FullMask | BlockCausalMask | AudioWindowMask
