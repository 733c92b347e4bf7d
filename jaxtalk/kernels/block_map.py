"""Which key blocks each query block reaches, and which of them it sees whole.

A kernel tiles attention into query blocks of `block_q` rows and key blocks of `block_k` columns.
From the per-row key ranges of a mask (`Mask.intervals`) every (query block, key block) pair is one
of three kinds:

- *empty*: no row sees any key of the block; the kernel never loads it;
- *partial*: some keys are hidden; the kernel rebuilds the mask from the row ranges;
- *full*: every row sees every key; the kernel skips the mask arithmetic.

The map lists, per query block, the indices of the reachable key blocks, partial ones first, and
how many of each; and the same per key block for the query blocks (the key/value gradient kernel
walks that way). It is built with `jnp`, so masks with traced offsets (the rolling sampler) work,
and costs O(length * key blocks), small next to the attention itself.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxtalk.kernels.masks import Mask

_PARTIAL, _FULL, _EMPTY = 0, 1, 2  # sort keys: partial blocks first, unreached ones last


class BlockList(NamedTuple):
  """For each outer block, the inner blocks to visit: `blocks[..., :num_partial]` need the mask,
  `blocks[..., num_partial:num_blocks]` do not, and the rest are never touched."""

  blocks: jax.Array  # [B|1, outer, inner] int32
  num_partial: jax.Array  # [B|1, outer] int32
  num_blocks: jax.Array  # [B|1, outer] int32


class BlockMap(NamedTuple):
  """Everything a blocked kernel needs to know about a mask (see module docstring)."""

  intervals: jax.Array  # [B|1, padded q_len, 4] int32, per row two visible key ranges
  by_query: BlockList  # key blocks of each query block
  by_key: BlockList  # query blocks of each key block


def _block_list(kind: jax.Array) -> BlockList:
  """[B|1, outer, inner] block kinds -> the inner blocks to visit per outer block."""
  order = jnp.argsort(kind, axis=-1, stable=True).astype(jnp.int32)
  count = lambda which: jnp.sum(kind == which, axis=-1, dtype=jnp.int32)
  num_partial = count(_PARTIAL)
  return BlockList(order, num_partial, num_partial + count(_FULL))


def block_map(mask: Mask, q_len: int, k_len: int, block_q: int, block_k: int) -> BlockMap:
  """The block map of `mask` for [q_len, k_len] attention tiled into `block_q` x `block_k` blocks.

  Query rows are padded to a whole number of blocks; padding rows get the ranges the mask gives
  their index, which only ever adds work that is thrown away. Key ranges end at `k_len`, so a key
  block that runs past the end is never full and its padding keys stay hidden.
  """
  num_q, num_k = -(-q_len // block_q), -(-k_len // block_k)
  intervals = mask.intervals(num_q * block_q, k_len)
  starts = jnp.arange(num_k, dtype=jnp.int32) * block_k

  def overlap(lo, hi):  # [B|1, Q] ranges -> [B|1, Q, num_k] keys of each block inside the range
    return jnp.maximum(
      jnp.minimum(hi[..., None], starts + block_k) - jnp.maximum(lo[..., None], starts), 0
    )

  # The two ranges are disjoint (prefix, then the rest), so their overlaps add up.
  seen = overlap(intervals[..., 0], intervals[..., 1]) + overlap(
    intervals[..., 2], intervals[..., 3]
  )
  seen = seen.reshape(seen.shape[0], num_q, block_q, num_k)
  kind = jnp.where(
    jnp.all(seen == block_k, axis=2), _FULL, jnp.where(jnp.any(seen > 0, axis=2), _PARTIAL, _EMPTY)
  )
  return BlockMap(intervals, _block_list(kind), _block_list(jnp.swapaxes(kind, 1, 2)))
