"""Mask key ranges and block maps against the dense masks they summarise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk.kernels.block_map import block_map
from jaxtalk.kernels.masks import BlockCausalMask, FullMask, LocalAudioMask

MASKS = {
  "full": (FullMask(), 23, 31),
  "full_padded": (FullMask(jnp.array([0, 17, 31])), 23, 31),
  "block_causal_sink": (BlockCausalMask(4, q_prefix=1, k_prefix=1, lookback_chunks=2), 37, 37),
  "block_causal_cache": (
    BlockCausalMask(
      3, k_prefix=2, lookback_chunks=3, q_offset=7, k_offset=-5, kv_lengths=jnp.array([9, 40])
    ),
    19,
    40,
  ),
  "block_causal_unbounded": (
    BlockCausalMask(5, q_prefix=2, k_prefix=2, q_offset=-4, k_offset=-4),
    29,
    29,
  ),
  "audio_radius": (LocalAudioMask(3, rate_num=5, rate_den=2, q_offset=2, k_offset=-3), 21, 64),
  "local_audio_padded": (LocalAudioMask(2, kv_lengths=jnp.array([12, 30])), 30, 30),
}


def _from_intervals(intervals, k_len):
  keys = np.arange(k_len)
  inside = lambda lo, hi: (keys >= intervals[..., lo, None]) & (keys < intervals[..., hi, None])
  return inside(0, 1) | inside(2, 3)


@pytest.mark.parametrize("name", MASKS)
def test_intervals_reproduce_the_dense_mask(name):
  mask, q_len, k_len = MASKS[name]
  dense = np.asarray(mask.dense(q_len, k_len))[:, 0]
  rebuilt = _from_intervals(np.asarray(mask.intervals(q_len, k_len)), k_len)
  np.testing.assert_array_equal(np.broadcast_to(rebuilt, dense.shape), dense)


def test_intervals_follow_traced_offsets():
  """The sampler moves its offsets inside lax loops; ranges must be computed from tracers."""

  def ranges(q_offset, k_offset):
    return BlockCausalMask(
      4, k_prefix=1, lookback_chunks=2, q_offset=q_offset, k_offset=k_offset
    ).intervals(8, 17)

  for q_offset, k_offset in [(-8, -24), (0, -16), (12, -4)]:
    mask = BlockCausalMask(4, k_prefix=1, lookback_chunks=2, q_offset=q_offset, k_offset=k_offset)
    np.testing.assert_array_equal(jax.jit(ranges)(q_offset, k_offset), mask.intervals(8, 17))


@pytest.mark.parametrize("name", MASKS)
def test_block_map_lists_exactly_the_reachable_blocks(name):
  mask, q_len, k_len = MASKS[name]
  block_q, block_k = 16, 4
  bmap = block_map(mask, q_len, k_len, block_q, block_k)
  num_q, num_k = -(-q_len // block_q), -(-k_len // block_k)
  dense = np.asarray(mask.dense(num_q * block_q, k_len))[:, 0]  # padding rows included
  dense = np.pad(dense, ((0, 0), (0, 0), (0, num_k * block_k - k_len)))
  tiles = dense.reshape(dense.shape[0], num_q, block_q, num_k, block_k)
  reached, full = tiles.any(axis=(2, 4)), tiles.all(axis=(2, 4))
  for lists, transpose in [(bmap.by_query, False), (bmap.by_key, True)]:
    want_reached = reached.swapaxes(1, 2) if transpose else reached
    want_full = full.swapaxes(1, 2) if transpose else full
    blocks, num_partial, num_blocks = (np.asarray(x) for x in lists)
    for b in range(blocks.shape[0]):
      for outer in range(blocks.shape[1]):
        visited = blocks[b, outer, : num_blocks[b, outer]]
        assert sorted(visited) == list(np.flatnonzero(want_reached[b, outer]))
        assert set(visited[num_partial[b, outer] :]) == set(np.flatnonzero(want_full[b, outer]))


# Offsets swept by the next test; the static fields give each mask a prefix, a lookback or a rate,
# and chunks or windows that the blocks do not align with.
REACH = {
  "block_causal_sink": (
    lambda q, k: BlockCausalMask(
      3, q_prefix=2, k_prefix=5, lookback_chunks=2, q_offset=q, k_offset=k
    ),
    8,
    4,
  ),
  "block_causal": (
    lambda q, k: BlockCausalMask(5, lookback_chunks=1, q_offset=q, k_offset=k),
    4,
    8,
  ),
  "audio_faster_than_video": (
    lambda q, k: LocalAudioMask(3, rate_num=5, rate_den=2, q_offset=q, k_offset=k),
    8,
    4,
  ),
  "audio_slower_than_video": (
    lambda q, k: LocalAudioMask(2, rate_num=2, rate_den=3, q_offset=q, k_offset=k),
    4,
    8,
  ),
}


@pytest.mark.parametrize("name", REACH)
def test_lists_are_as_long_as_the_most_that_any_offsets_reach(name):
  """The lists' static length, bounded from the mask's structure, holds every reachable block
  whatever the (traced) offsets, and some offsets fill it: the bound is tight."""
  make, block_q, block_k = REACH[name]
  lists = lambda q_offset, k_offset: block_map(make(q_offset, k_offset), 64, 96, block_q, block_k)[
    1:
  ]
  offsets = jnp.arange(-40, 41)
  q_offsets, k_offsets = (x.ravel() for x in jnp.meshgrid(offsets, offsets))
  most = jax.jit(jax.vmap(lambda q, k: [x.num_blocks.max() for x in lists(q, k)]))
  reached = [int(m.max()) for m in most(q_offsets, k_offsets)]
  assert reached == [x.blocks.shape[-1] for x in lists(0, 0)]


def test_local_audio_cost_is_linear_in_length():
  """Each query block reaches the few key blocks around its audio frames, however long the clip."""
  for length in (256, 1024):
    bmap = block_map(LocalAudioMask(4), length, length, 32, 32)
    assert int(bmap.by_query.num_blocks.max()) == 3  # its own block and one on each side
    assert int(bmap.by_query.num_partial.max()) == 3  # a window edge crosses every block it reaches


def test_block_causal_full_blocks_skip_the_mask():
  """Chunks aligned with blocks: every reachable block is fully visible, none needs the mask."""
  bmap = block_map(BlockCausalMask(32), 256, 256, 32, 32)
  np.testing.assert_array_equal(bmap.by_query.num_blocks[0], np.arange(1, 9))
  np.testing.assert_array_equal(bmap.by_query.num_partial[0], np.zeros(8))
