"""Pallas GPU (Triton lowering) flash attention that visits only the key blocks its mask reaches.

One program per (batch, head, query block) keeps the query block in registers and loops over the
key blocks listed by the block map: first the partial blocks, whose mask it rebuilds from the rows'
key ranges, then the full blocks, with no mask arithmetic. Keys and values stay in global memory
[B, L, H, D] and are sliced per block, as Triton loads them tile by tile anyway; nothing is
transposed. The key/value gradient runs one program per key block over the query blocks that reach
it, the query gradient one per query block, so neither needs atomics.

Triton tiles must have power-of-two sides of at least 16; `flash.py` pads lengths and the head dim.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pl_triton

from jaxtalk.kernels import flash
from jaxtalk.kernels.block_map import BlockList, BlockMap


def _load_rows(intervals_ref, rows):
  """The four key-range bounds of `rows` as [rows, 1] int32 columns."""
  return tuple(intervals_ref[rows, c][:, None] for c in range(4))


def _key_block_scores(q, k_ref, block, block_k, scale, rows):
  """(slice of key block `block`, its scaled scores); `rows` (key ranges of the query rows) hides
  what they do not see, False leaves a fully visible block alone."""
  start = pl.multiple_of(block * block_k, block_k)
  keys = pl.ds(start, block_k)
  scores = flash.dot_nt(q, k_ref[keys, :]) * scale
  if rows:
    scores = jnp.where(flash.visible(rows, start, block_k), scores, -jnp.inf)
  return keys, scores


def _walk(block_list_refs, body, carry):
  """Run `body(block, masked, carry)` over the partial, then the full blocks of one list."""
  blocks_ref, num_partial_ref, num_blocks_ref = block_list_refs
  num_partial, num_blocks = num_partial_ref[0], num_blocks_ref[0]
  carry = jax.lax.fori_loop(0, num_partial, lambda s, c: body(blocks_ref[s], True, c), carry)
  return jax.lax.fori_loop(
    num_partial, num_blocks, lambda s, c: body(blocks_ref[s], False, c), carry
  )


def _forward_kernel(
  intervals_ref,
  blocks_ref,
  num_partial_ref,
  num_blocks_ref,
  q_ref,
  k_ref,
  v_ref,
  out_ref,
  lse_ref,
  *,
  scale,
  block_k,
):
  q = q_ref[...]
  rows = _load_rows(intervals_ref, slice(None))

  def body(block, masked, carry):
    keys, scores = _key_block_scores(q, k_ref, block, block_k, scale, masked and rows)
    return flash.softmax_step(carry, scores, v_ref[keys, :])

  carry = _walk((blocks_ref, num_partial_ref, num_blocks_ref), body, flash.softmax_init(*q.shape))
  out, lse = flash.softmax_finish(carry)
  out_ref[...] = out.astype(out_ref.dtype)
  lse_ref[...] = lse


def _dq_kernel(
  intervals_ref,
  blocks_ref,
  num_partial_ref,
  num_blocks_ref,
  q_ref,
  k_ref,
  v_ref,
  dout_ref,
  lse_ref,
  delta_ref,
  dq_ref,
  *,
  scale,
  block_k,
):
  q, dout = q_ref[...], dout_ref[...]
  lse, delta = lse_ref[...], delta_ref[...]
  rows = _load_rows(intervals_ref, slice(None))

  def body(block, masked, dq):
    keys, scores = _key_block_scores(q, k_ref, block, block_k, scale, masked and rows)
    k = k_ref[keys, :]
    _, dscores = flash.score_gradients(scores, lse, dout, v_ref[keys, :], delta)
    return dq + flash.dot_nn(dscores.astype(k.dtype), k)

  dq = _walk((blocks_ref, num_partial_ref, num_blocks_ref), body, jnp.zeros(q.shape, jnp.float32))
  dq_ref[...] = (dq * scale).astype(dq_ref.dtype)


def _dkv_kernel(
  intervals_ref,
  blocks_ref,
  num_partial_ref,
  num_blocks_ref,
  q_ref,
  k_ref,
  v_ref,
  dout_ref,
  lse_ref,
  delta_ref,
  dk_ref,
  dv_ref,
  *,
  scale,
  block_q,
):
  k, v = k_ref[...], v_ref[...]
  block_k = k.shape[0]
  key_start = pl.program_id(2) * block_k

  def body(block, masked, carry):
    dk, dv = carry
    rows = pl.ds(pl.multiple_of(block * block_q, block_q), block_q)
    q, dout = q_ref[rows, :], dout_ref[rows, :]
    scores = flash.dot_nt(q, k) * scale
    if masked:
      scores = jnp.where(
        flash.visible(_load_rows(intervals_ref, rows), key_start, block_k), scores, -jnp.inf
      )
    probs, dscores = flash.score_gradients(scores, lse_ref[rows, :], dout, v, delta_ref[rows, :])
    dv = dv + flash.dot_tn(probs.astype(dout.dtype), dout)
    return dk + flash.dot_tn(dscores.astype(q.dtype), q), dv

  zeros = jnp.zeros(k.shape, jnp.float32)
  dk, dv = _walk((blocks_ref, num_partial_ref, num_blocks_ref), body, (zeros, zeros))
  dk_ref[...] = (dk * scale).astype(dk_ref.dtype)
  dv_ref[...] = dv.astype(dv_ref.dtype)


def _list_specs(block_list: BlockList):
  """BlockSpecs handing each program the list row of its outer block (grid = (b, h, outer))."""
  per_batch = block_list.blocks.shape[0] > 1
  pick = lambda b: b if per_batch else 0
  inner = block_list.blocks.shape[2]
  return [
    pl.BlockSpec((None, None, inner), lambda b, h, i: (pick(b), i, 0)),
    pl.BlockSpec((None, 1), lambda b, h, i: (pick(b), i)),
    pl.BlockSpec((None, 1), lambda b, h, i: (pick(b), i)),
  ]


@dataclasses.dataclass(frozen=True)
class PallasGpu:
  """Block sizes and launch settings of the Triton kernels (see `flash.Backend`)."""

  block_q: int = 128
  block_k: int = 64
  block_q_bwd: int = 64
  block_k_bwd: int = 64
  num_warps: int = 4
  num_stages: int = 2
  interpret: bool = False

  def blocks(self, q_len, k_len, backward):
    block_q, block_k = (
      (self.block_q_bwd, self.block_k_bwd) if backward else (self.block_q, self.block_k)
    )
    return flash.block_size(q_len, block_q, 16), flash.block_size(k_len, block_k, 16)

  def _call(self, kernel, cost, grid, in_specs, out_specs, out_shape, *args):
    """`cost`: (the kernel's name in `flash.MATMULS`, its block list, (block_q, block_k)); the
    grid is (b, h, outer block); `args`: the intervals, the list's three arrays, then q first."""
    name, block_list, blocks = cost
    outputs = out_shape if isinstance(out_shape, list) else [out_shape]
    shape = (*grid[:2], *blocks, args[4].shape[-1])
    estimate = flash.cost_estimate(name, block_list, shape, [*args[4:], *outputs])
    return pl.pallas_call(
      kernel,
      grid=grid,
      in_specs=in_specs,
      out_specs=out_specs,
      out_shape=out_shape,
      compiler_params=pl_triton.CompilerParams(
        num_warps=self.num_warps, num_stages=self.num_stages
      ),
      interpret=self.interpret,
      cost_estimate=estimate,
    )(*args)

  def forward(self, q, k, v, bmap: BlockMap, scale):
    batch, q_len, heads, width = q.shape
    k_len, group = k.shape[1], heads // k.shape[2]
    num_q = bmap.by_query.blocks.shape[1]
    block_q, block_k = q_len // num_q, k_len // bmap.by_key.blocks.shape[1]
    q_spec = pl.BlockSpec((None, block_q, None, width), lambda b, h, i: (b, i, h, 0))
    kv_spec = pl.BlockSpec((None, k_len, None, width), lambda b, h, i: (b, 0, h // group, 0))
    kernel = functools.partial(_forward_kernel, scale=scale, block_k=block_k)
    return self._call(
      kernel,
      ("forward", bmap.by_query, (block_q, block_k)),
      (batch, heads, num_q),
      [_intervals_spec(bmap, block_q), *_list_specs(bmap.by_query), q_spec, kv_spec, kv_spec],
      [q_spec, pl.BlockSpec((None, None, block_q, 1), lambda b, h, i: (b, h, i, 0))],
      [
        jax.ShapeDtypeStruct(q.shape, q.dtype),
        jax.ShapeDtypeStruct((batch, heads, q_len, 1), jnp.float32),
      ],
      bmap.intervals,
      *bmap.by_query,
      q,
      k,
      v,
    )

  def backward(self, q, k, v, dout, lse, delta, bmap: BlockMap, scale, grad_dtype):
    batch, q_len, heads, width = q.shape
    k_len, group = k.shape[1], heads // k.shape[2]
    num_q, num_k = bmap.by_query.blocks.shape[1], bmap.by_key.blocks.shape[1]
    block_q, block_k = q_len // num_q, k_len // num_k
    q_block = pl.BlockSpec((None, block_q, None, width), lambda b, h, i: (b, i, h, 0))
    q_whole = pl.BlockSpec((None, q_len, None, width), lambda b, h, i: (b, 0, h, 0))
    row_block = pl.BlockSpec((None, None, block_q, 1), lambda b, h, i: (b, h, i, 0))
    row_whole = pl.BlockSpec((None, None, q_len, 1), lambda b, h, i: (b, h, 0, 0))
    kv_block = pl.BlockSpec((None, block_k, None, width), lambda b, h, i: (b, i, h // group, 0))
    kv_whole = pl.BlockSpec((None, k_len, None, width), lambda b, h, i: (b, 0, h // group, 0))
    grad_block = pl.BlockSpec((None, block_k, None, width), lambda b, h, i: (b, i, h, 0))

    dq = self._call(
      functools.partial(_dq_kernel, scale=scale, block_k=block_k),
      ("dq", bmap.by_query, (block_q, block_k)),
      (batch, heads, num_q),
      [
        _intervals_spec(bmap, block_q),
        *_list_specs(bmap.by_query),
        q_block,
        kv_whole,
        kv_whole,
        q_block,
        row_block,
        row_block,
      ],
      q_block,
      jax.ShapeDtypeStruct(q.shape, q.dtype),
      bmap.intervals,
      *bmap.by_query,
      q,
      k,
      v,
      dout,
      lse,
      delta,
    )
    grad_shape = jax.ShapeDtypeStruct((batch, k_len, heads, width), grad_dtype)
    dk, dv = self._call(
      functools.partial(_dkv_kernel, scale=scale, block_q=block_q),
      ("dkv", bmap.by_key, (block_q, block_k)),
      (batch, heads, num_k),
      [
        _intervals_spec(bmap, q_len),
        *_list_specs(bmap.by_key),
        q_whole,
        kv_block,
        kv_block,
        q_whole,
        row_whole,
        row_whole,
      ],
      [grad_block, grad_block],
      [grad_shape, grad_shape],
      bmap.intervals,
      *bmap.by_key,
      q,
      k,
      v,
      dout,
      lse,
      delta,
    )
    return dq, dk, dv


def _intervals_spec(bmap: BlockMap, rows: int):
  """The key ranges of `rows` query rows: one query block, or all of them (rows = q_len)."""
  per_batch = bmap.intervals.shape[0] > 1
  whole = rows == bmap.intervals.shape[1]
  return pl.BlockSpec(
    (None, rows, 4), lambda b, h, i: (b if per_batch else 0, 0 if whole else i, 0)
  )
