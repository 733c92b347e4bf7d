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

How many blocks a list holds is data (traced offsets, key lengths), but its length is static: the
most that any outer block can reach, bounded from the mask's static structure (`Mask.key_reach`,
`Mask.query_reach`). A TPU kernel's grid walks that many inner steps, so a local mask costs
O(length * window) grid steps, not O(length^2).
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

  blocks: jax.Array  # [B|1, outer, most any outer block can reach] int32
  num_partial: jax.Array  # [B|1, outer] int32
  num_blocks: jax.Array  # [B|1, outer] int32


class BlockMap(NamedTuple):
  """Everything a blocked kernel needs to know about a mask (see module docstring)."""

  intervals: jax.Array  # [B|1, padded q_len, 4] int32, per row two visible key ranges
  by_query: BlockList  # key blocks of each query block
  by_key: BlockList  # query blocks of each key block


def _block_list(kind: jax.Array, most: int) -> BlockList:
  """[B|1, outer, inner] block kinds -> the inner blocks to visit per outer block, of which there
  are at most `most`."""
  order = jnp.argsort(kind, axis=-1, stable=True).astype(jnp.int32)[..., :most]
  count = lambda which: jnp.sum(kind == which, axis=-1, dtype=jnp.int32)
  num_partial = count(_PARTIAL)
  return BlockList(order, num_partial, num_partial + count(_FULL))


def _blocks_touched(run: int | None, block: int, num_blocks: int) -> int:
  """At most how many of `num_blocks` blocks a run of `run` consecutive indices touches, wherever
  it starts (None: of unknown length)."""
  return num_blocks if run is None else min(num_blocks, (run + block - 2) // block + 1)


def _most_reached(
  mask: Mask, num_q: int, num_k: int, block_q: int, block_k: int
) -> tuple[int, int]:
  """(most key blocks a query block reaches, most query blocks a key block reaches), from the
  mask's static fields: true for any offsets and key lengths."""
  prefix, run = mask.key_reach(block_q)
  prefix_blocks = -(-prefix // block_k)  # the prefix starts at key 0, block-aligned
  by_query = min(num_k, prefix_blocks + _blocks_touched(run, block_k, num_k))
  return by_query, _blocks_touched(mask.query_reach(block_k), block_q, num_q)


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
  most_k, most_q = _most_reached(mask, num_q, num_k, block_q, block_k)
  return BlockMap(
    intervals, _block_list(kind, most_k), _block_list(jnp.swapaxes(kind, 1, 2), most_q)
  )
