"""Pallas TPU (Mosaic) flash attention that visits only the key blocks its mask reaches.

On TPU the pipeline is the grid: Pallas double-buffers the block each grid step names, so the inner
loop over key blocks is the last grid axis rather than a loop in the kernel. The block map's lists
go in as scalar prefetch (SMEM), and the key/value index map reads the next block to visit from
them. The inner grid axis is as long as the longest list can be (bounded from the mask's
structure, see `block_map.py`), so the grid follows the mask: a local mask walks a few key blocks
per query block however long the sequence. Steps past the end of a query block's own list repeat
its last block index, so Pallas issues no copy for them, and the kernel does nothing on those
steps. The online-softmax state lives in VMEM scratch across the steps of one query block.

Tensors are laid out [B, H, L, D] here (the last two block dims must be whole tiles of (8, 128) or
the whole axis); the backend transposes on the way in and out.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from jaxtalk.kernels import flash
from jaxtalk.kernels.block_map import BlockMap


def _scores(q, k, scale, mask_at):
  """Scaled scores of a block; `mask_at` = (key ranges of its rows, first key) hides what they do
  not see, False leaves a fully visible block alone."""
  scores = flash.dot_nt(q, k) * scale
  if not mask_at:
    return scores
  intervals_ref, key_start = mask_at
  intervals = intervals_ref[...]
  rows = tuple(intervals[:, c : c + 1] for c in range(4))
  return jnp.where(flash.visible(rows, key_start, k.shape[0]), scores, -jnp.inf)


def _step_kind(lists, outer, step):
  """(visit masked?, visit unmasked?) for grid step `step` of outer block `outer`."""
  _, num_partial_ref, num_blocks_ref, pick = lists
  num_partial, num_blocks = num_partial_ref[pick, outer], num_blocks_ref[pick, outer]
  return step < num_partial, (step >= num_partial) & (step < num_blocks)


def _visit(lists, outer, step, body):
  """Run `body(masked)` when this grid step has a block to visit."""
  masked, unmasked = _step_kind(lists, outer, step)
  pl.when(masked)(lambda: body(True))
  pl.when(unmasked)(lambda: body(False))


def _forward_kernel(
  blocks_ref,
  num_partial_ref,
  num_blocks_ref,
  intervals_ref,
  q_ref,
  k_ref,
  v_ref,
  out_ref,
  lse_ref,
  acc_ref,
  max_ref,
  sum_ref,
  *,
  scale,
  per_batch,
):
  batch, query_block, step = pl.program_id(0), pl.program_id(2), pl.program_id(3)
  lists = (blocks_ref, num_partial_ref, num_blocks_ref, batch if per_batch else 0)
  block_k = k_ref.shape[0]

  @pl.when(step == 0)
  def _():
    acc_ref[...], max_ref[...], sum_ref[...] = flash.softmax_init(*acc_ref.shape)

  def body(masked):
    key_start = _current(lists, query_block, step) * block_k
    scores = _scores(q_ref[...], k_ref[...], scale, masked and (intervals_ref, key_start))
    carry = flash.softmax_step((acc_ref[...], max_ref[...], sum_ref[...]), scores, v_ref[...])
    acc_ref[...], max_ref[...], sum_ref[...] = carry

  _visit(lists, query_block, step, body)

  @pl.when(step == pl.num_programs(3) - 1)
  def _():
    out, lse = flash.softmax_finish((acc_ref[...], max_ref[...], sum_ref[...]))
    out_ref[...] = out.astype(out_ref.dtype)
    lse_ref[...] = lse


def _dq_kernel(
  blocks_ref,
  num_partial_ref,
  num_blocks_ref,
  intervals_ref,
  q_ref,
  k_ref,
  v_ref,
  dout_ref,
  lse_ref,
  delta_ref,
  dq_ref,
  acc_ref,
  *,
  scale,
  per_batch,
):
  batch, query_block, step = pl.program_id(0), pl.program_id(2), pl.program_id(3)
  lists = (blocks_ref, num_partial_ref, num_blocks_ref, batch if per_batch else 0)
  block_k = k_ref.shape[0]

  @pl.when(step == 0)
  def _():
    acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

  def body(masked):
    k = k_ref[...]
    key_start = _current(lists, query_block, step) * block_k
    scores = _scores(q_ref[...], k, scale, masked and (intervals_ref, key_start))
    _, dscores = flash.score_gradients(
      scores, lse_ref[...], dout_ref[...], v_ref[...], delta_ref[...]
    )
    acc_ref[...] += flash.dot_nn(dscores.astype(k.dtype), k)

  _visit(lists, query_block, step, body)

  @pl.when(step == pl.num_programs(3) - 1)
  def _():
    dq_ref[...] = (acc_ref[...] * scale).astype(dq_ref.dtype)


def _dkv_kernel(
  blocks_ref,
  num_partial_ref,
  num_blocks_ref,
  intervals_ref,
  q_ref,
  k_ref,
  v_ref,
  dout_ref,
  lse_ref,
  delta_ref,
  dk_ref,
  dv_ref,
  dk_acc_ref,
  dv_acc_ref,
  *,
  scale,
  per_batch,
):
  batch, key_block, step = pl.program_id(0), pl.program_id(2), pl.program_id(3)
  lists = (blocks_ref, num_partial_ref, num_blocks_ref, batch if per_batch else 0)
  block_k = k_ref.shape[0]

  @pl.when(step == 0)
  def _():
    dk_acc_ref[...] = jnp.zeros(dk_acc_ref.shape, jnp.float32)
    dv_acc_ref[...] = jnp.zeros(dv_acc_ref.shape, jnp.float32)

  def body(masked):
    q, dout = q_ref[...], dout_ref[...]
    scores = _scores(q, k_ref[...], scale, masked and (intervals_ref, key_block * block_k))
    probs, dscores = flash.score_gradients(scores, lse_ref[...], dout, v_ref[...], delta_ref[...])
    dv_acc_ref[...] += flash.dot_tn(probs.astype(dout.dtype), dout)
    dk_acc_ref[...] += flash.dot_tn(dscores.astype(q.dtype), q)

  _visit(lists, key_block, step, body)

  @pl.when(step == pl.num_programs(3) - 1)
  def _():
    dk_ref[...] = (dk_acc_ref[...] * scale).astype(dk_ref.dtype)
    dv_ref[...] = dv_acc_ref[...].astype(dv_ref.dtype)


def _kv_head(head, group):
  # lax.div, not //: head >= 0, and Mosaic's floor division needs the chip generation to lower.
  return jax.lax.div(head, group)


def _current(lists, outer, step):
  """The inner block that grid step `step` of `outer` visits; past the list's end, its last one."""
  blocks_ref, _, num_blocks_ref, pick = lists
  last = jnp.maximum(num_blocks_ref[pick, outer] - 1, 0)
  return blocks_ref[pick, outer, jnp.minimum(step, last)]


@dataclasses.dataclass(frozen=True)
class PallasTpu:
  """Block sizes of the Mosaic kernels (see `flash.Backend`)."""

  block_q: int = 512
  block_k: int = 512
  block_q_bwd: int = 256
  block_k_bwd: int = 256
  interpret: bool = False

  def blocks(self, q_len, k_len, backward):
    # Whole (8, 128) tiles: a block of rows is a multiple of 8 and a block of keys of 128, because
    # the key axis is the lane axis of the score tile.
    block_q, block_k = (
      (self.block_q_bwd, self.block_k_bwd) if backward else (self.block_q, self.block_k)
    )
    return flash.block_size(q_len, block_q, 8), flash.block_size(k_len, block_k, 128)

  def _call(self, kernel, cost, grid, in_specs, out_specs, out_shape, scratch, block_list, *args):
    """`cost`: (the kernel's name in `flash.MATMULS`, (block_q, block_k)); the grid is (b, h,
    outer block, step over `block_list`); `args`: the intervals, then the arrays, q first."""
    name, blocks = cost
    outputs = out_shape if isinstance(out_shape, list) else [out_shape]
    shape = (*grid[:2], *blocks, args[1].shape[-1])
    estimate = flash.cost_estimate(name, block_list, shape, [*args[1:], *outputs])
    grid_spec = pltpu.PrefetchScalarGridSpec(
      num_scalar_prefetch=3,
      grid=grid,
      in_specs=in_specs,
      out_specs=out_specs,
      scratch_shapes=scratch,
    )
    return pl.pallas_call(
      kernel,
      grid_spec=grid_spec,
      out_shape=out_shape,
      compiler_params=pltpu.CompilerParams(
        dimension_semantics=("parallel", "parallel", "parallel", "arbitrary")
      ),
      interpret=pltpu.InterpretParams() if self.interpret else False,
      cost_estimate=estimate,
    )(*block_list, *args)

  def forward(self, q, k, v, bmap: BlockMap, scale):
    q, k, v = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))
    batch, heads, q_len, width = q.shape
    k_len, group = k.shape[2], heads // k.shape[1]
    lists = bmap.by_query
    num_q, steps = lists.blocks.shape[1:]
    block_q, block_k = q_len // num_q, k_len // bmap.by_key.blocks.shape[1]
    per_batch = lists.blocks.shape[0] > 1
    pick = (lambda b: b) if per_batch else (lambda b: 0)
    key = lambda b, h, i, s, *refs: (b, _kv_head(h, group), _current((*refs, pick(b)), i, s), 0)
    q_spec = pl.BlockSpec((None, None, block_q, width), lambda b, h, i, s, *_: (b, h, i, 0))
    kv_spec = pl.BlockSpec((None, None, block_k, width), key)
    kernel = functools.partial(_forward_kernel, scale=scale, per_batch=per_batch)
    out, lse = self._call(
      kernel,
      ("forward", (block_q, block_k)),
      (batch, heads, num_q, steps),
      [_intervals_spec(bmap, block_q, per_batch), q_spec, kv_spec, kv_spec],
      [q_spec, pl.BlockSpec((None, None, block_q, 1), lambda b, h, i, s, *_: (b, h, i, 0))],
      [
        jax.ShapeDtypeStruct(q.shape, q.dtype),
        jax.ShapeDtypeStruct((batch, heads, q_len, 1), jnp.float32),
      ],
      [
        pltpu.VMEM((block_q, width), jnp.float32),
        pltpu.VMEM((block_q, 1), jnp.float32),
        pltpu.VMEM((block_q, 1), jnp.float32),
      ],
      lists,
      bmap.intervals,
      q,
      k,
      v,
    )
    return jnp.swapaxes(out, 1, 2), lse

  def backward(self, q, k, v, dout, lse, delta, bmap: BlockMap, scale, grad_dtype):
    q, k, v, dout = (jnp.swapaxes(x, 1, 2) for x in (q, k, v, dout))
    batch, heads, q_len, width = q.shape
    k_len, group = k.shape[2], heads // k.shape[1]
    num_q, num_k = bmap.by_query.blocks.shape[1], bmap.by_key.blocks.shape[1]
    block_q, block_k = q_len // num_q, k_len // num_k
    per_batch = bmap.intervals.shape[0] > 1
    pick = (lambda b: b) if per_batch else (lambda b: 0)

    # Query gradient: grid (b, h, query block, step over its key blocks).
    fixed_q = lambda b, h, i, s, *_: (b, h, i, 0)
    listed_k = lambda b, h, i, s, *refs: (
      b,
      _kv_head(h, group),
      _current((*refs, pick(b)), i, s),
      0,
    )
    q_block = pl.BlockSpec((None, None, block_q, width), fixed_q)
    row_block = pl.BlockSpec((None, None, block_q, 1), fixed_q)
    kv_block = pl.BlockSpec((None, None, block_k, width), listed_k)
    dq = self._call(
      functools.partial(_dq_kernel, scale=scale, per_batch=per_batch),
      ("dq", (block_q, block_k)),
      (batch, heads, num_q, bmap.by_query.blocks.shape[2]),
      [
        _intervals_spec(bmap, block_q, per_batch),
        q_block,
        kv_block,
        kv_block,
        q_block,
        row_block,
        row_block,
      ],
      q_block,
      jax.ShapeDtypeStruct(q.shape, q.dtype),
      [pltpu.VMEM((block_q, width), jnp.float32)],
      bmap.by_query,
      bmap.intervals,
      q,
      k,
      v,
      dout,
      lse,
      delta,
    )

    # Key/value gradients: grid (b, h, key block, step over the query blocks that reach it).
    listed_q = lambda b, h, j, s, *refs: (b, h, _current((*refs, pick(b)), j, s), 0)
    fixed_kv = lambda b, h, j, s, *_: (b, _kv_head(h, group), j, 0)
    q_listed = pl.BlockSpec((None, None, block_q, width), listed_q)
    row_listed = pl.BlockSpec((None, None, block_q, 1), listed_q)
    kv_fixed = pl.BlockSpec((None, None, block_k, width), fixed_kv)
    grad_block = pl.BlockSpec((None, None, block_k, width), lambda b, h, j, s, *_: (b, h, j, 0))
    intervals_listed = pl.BlockSpec(
      (None, block_q, 4), lambda b, h, j, s, *refs: (pick(b), _current((*refs, pick(b)), j, s), 0)
    )
    grad_shape = jax.ShapeDtypeStruct((batch, heads, k_len, width), grad_dtype)
    dk, dv = self._call(
      functools.partial(_dkv_kernel, scale=scale, per_batch=per_batch),
      ("dkv", (block_q, block_k)),
      (batch, heads, num_k, bmap.by_key.blocks.shape[2]),
      [intervals_listed, q_listed, kv_fixed, kv_fixed, q_listed, row_listed, row_listed],
      [grad_block, grad_block],
      [grad_shape, grad_shape],
      [pltpu.VMEM((block_k, width), jnp.float32)] * 2,
      bmap.by_key,
      bmap.intervals,
      q,
      k,
      v,
      dout,
      lse,
      delta,
    )
    return tuple(jnp.swapaxes(x, 1, 2) for x in (dq, dk, dv))


def _intervals_spec(bmap: BlockMap, block_q: int, per_batch: bool):
  return pl.BlockSpec((None, block_q, 4), lambda b, h, i, s, *_: (b if per_batch else 0, i, 0))
