"""What every blocked (flash) attention kernel shares: padding, the custom VJP, the softmax maths.

A backend (`pallas_gpu.py`, `pallas_tpu.py`) supplies three `pallas_call`s on padded tensors laid out
[batch, length, heads, head_dim]: the forward (output and log-sum-exp per row), the query gradient
and the key/value gradient, each walking the lists of a `BlockMap`. This module pads lengths to
whole blocks and the head dim to a power of two (Triton tiles must be, and zero features change no
score), builds the block maps, ties forward and backward together with `jax.custom_vjp`, and sums
the key/value gradients of the query heads that share a key/value head (grouped-query attention).

The in-kernel helpers below are plain `jnp` on values, so both backends lower the same maths.
"""

from __future__ import annotations

import functools
import math
from typing import Protocol

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from jaxtalk.kernels.block_map import BlockList, BlockMap, block_map
from jaxtalk.kernels.masks import Mask


class Backend(Protocol):
  """The kernels of one platform; a frozen dataclass, so it can be a static argument."""

  def blocks(self, q_len: int, k_len: int, backward: bool) -> tuple[int, int]:
    """(block_q, block_k) for the forward or the backward pass."""

  def forward(self, q, k, v, bmap: BlockMap, scale: float) -> tuple[jax.Array, jax.Array]:
    """Padded q [B, Lq, H, D], k/v [B, Lk, Hkv, D] -> out like q, lse [B, H, Lq, 1] float32."""

  def backward(
    self, q, k, v, dout, lse, delta, bmap: BlockMap, scale: float, grad_dtype
  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """-> dq like q; dk, dv [B, Lk, H, D] per *query* head in `grad_dtype`."""


def next_power_of_two(n: int) -> int:
  return 1 << max(n - 1, 0).bit_length()


def block_size(length: int, preferred: int, smallest: int) -> int:
  """`preferred`, or the smallest power of two (>= `smallest`) that covers a short sequence."""
  return max(smallest, min(preferred, next_power_of_two(length)))


def visible(rows: tuple[jax.Array, ...], key_start, block_k: int) -> jax.Array:
  """[rows, block_k] mask of the key block at `key_start` from the rows' two key ranges ([rows, 1])."""
  lo0, hi0, lo1, hi1 = rows
  keys = key_start + jnp.arange(block_k, dtype=jnp.int32)[None, :]
  return ((keys >= lo0) & (keys < hi0)) | ((keys >= lo1) & (keys < hi1))


def dot_nt(a: jax.Array, b: jax.Array) -> jax.Array:
  """a [m, d] . b[n, d]^T in float32."""
  return jax.lax.dot_general(a, b, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)


def dot_tn(a: jax.Array, b: jax.Array) -> jax.Array:
  """a[m, n]^T . b [m, d] in float32."""
  return jax.lax.dot_general(a, b, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)


def dot_nn(a: jax.Array, b: jax.Array) -> jax.Array:
  return jax.lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32)


def softmax_step(carry, scores: jax.Array, v: jax.Array):
  """One key block of the online softmax; carry = (acc [rows, D], row max, row sum [rows, 1]).

  Row statistics keep a trailing axis of 1: both Triton and Mosaic lower [rows, 1] reductions and
  broadcasts directly. Hidden scores are -inf. While a row has seen no visible key its max stays
  -inf, and the exponent is taken against 0 instead, so every weight is exactly 0 rather than NaN.
  """
  acc, row_max, row_sum = carry
  new_max = jnp.maximum(row_max, jnp.max(scores, axis=1, keepdims=True))
  safe_max = jnp.where(new_max == -jnp.inf, 0.0, new_max)
  weights = jnp.exp(scores - safe_max)
  rescale = jnp.exp(row_max - safe_max)
  acc = acc * rescale + dot_nn(weights.astype(v.dtype), v)
  return acc, new_max, row_sum * rescale + jnp.sum(weights, axis=1, keepdims=True)


def softmax_init(rows: int, head_dim: int):
  return (
    jnp.zeros((rows, head_dim), jnp.float32),
    jnp.full((rows, 1), -jnp.inf, jnp.float32),
    jnp.zeros((rows, 1), jnp.float32),
  )


def softmax_finish(carry):
  """(output [rows, D] float32, log-sum-exp [rows, 1]); a row that saw nothing gets 0 and +inf."""
  acc, row_max, row_sum = carry
  seen = row_sum > 0
  safe_sum = jnp.where(seen, row_sum, 1.0)
  return acc / safe_sum, jnp.where(seen, row_max + jnp.log(safe_sum), jnp.inf)


def score_gradients(scores, lse, dout, v, delta):
  """(probabilities, score gradients) of one block in the backward pass; all [rows, keys] float32.

  p = exp(s - lse) recomputes the forward softmax from the saved log-sum-exp; ds = p * (dp - delta)
  with dp = dout . v^T is the softmax Jacobian applied to the output gradient.
  """
  probs = jnp.exp(scores - lse)
  return probs, probs * (dot_nt(dout, v) - delta)


# [block_q, block_k] x head_dim matrix products per pair of blocks a kernel visits: the forward's
# q.k^T and p.v; the query gradient's q.k^T, dout.v^T and ds.k; the key/value gradient's q.k^T,
# dout.v^T, p^T.dout and ds^T.q.
MATMULS = {"forward": 2, "dq": 3, "dkv": 4}


def cost_estimate(
  kernel: str, lists: BlockList, shape: tuple[int, int, int, int, int], arrays
) -> pl.CostEstimate:
  """What one of the three kernels does walking `lists` for every (example, head), `shape` being
  (batch, heads, block_q, block_k, padded head dim): for XLA's scheduler, and the model FLOPs of
  `jaxtalk.bench.flops` (a kernel's body has exclusive masked and unmasked branches, which only the
  kernel knows apart). Every pair of blocks the lists have room for counts whole: blocks that a
  mask cuts are computed whole. `arrays`: what the kernel reads and writes, each counted once."""
  batch, heads, block_q, block_k, width = shape
  scores = batch * heads * lists.blocks.shape[1] * lists.blocks.shape[2] * block_q * block_k
  return pl.CostEstimate(
    flops=2 * MATMULS[kernel] * scores * width,
    transcendentals=scores,  # one exp per score
    bytes_accessed=sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in arrays),
  )


def _pad(x: jax.Array, axis: int, size: int) -> jax.Array:
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, size - x.shape[axis])
  return jnp.pad(x, widths)


def _padded(x: jax.Array, block: int, head_dim: int) -> jax.Array:
  """[B, L, H, D] padded to a whole number of blocks along L and to `head_dim` features."""
  return _pad(_pad(x, 1, -(-x.shape[1] // block) * block), 3, head_dim)


def flash_attention(
  backend: Backend, q: jax.Array, k: jax.Array, v: jax.Array, mask: Mask
) -> jax.Array:
  """Blocked attention with `backend`'s kernels; same contract as `reference_attention`."""
  return _flash(backend, q, k, v, mask)


def _forward(backend, q, k, v, mask):
  q_len, k_len, head_dim = q.shape[1], k.shape[1], q.shape[3]
  block_q, block_k = backend.blocks(q_len, k_len, backward=False)
  width = next_power_of_two(max(head_dim, 16))
  bmap = block_map(mask, q_len, k_len, block_q, block_k)
  out, lse = backend.forward(
    _padded(q, block_q, width),
    _padded(k, block_k, width),
    _padded(v, block_k, width),
    bmap,
    head_dim**-0.5,
  )
  return out[:, :q_len, :, :head_dim], lse[:, :, :q_len]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flash(backend, q, k, v, mask):
  return _forward(backend, q, k, v, mask)[0]


def _flash_fwd(backend, q, k, v, mask):
  out, lse = _forward(backend, q, k, v, mask)
  return out, (q, k, v, mask, out, lse)


def _flash_bwd(backend, residuals, dout):
  q, k, v, mask, out, lse = residuals
  batch, q_len, heads, head_dim = q.shape
  k_len, kv_heads = k.shape[1], k.shape[2]
  block_q, block_k = backend.blocks(q_len, k_len, backward=True)
  width = next_power_of_two(max(head_dim, 16))
  bmap = block_map(mask, q_len, k_len, block_q, block_k)
  # delta_i = sum_j p_ij dp_ij = dout_i . out_i: the softmax Jacobian's correction per row.
  delta = jnp.einsum("blhd,blhd->bhl", dout.astype(jnp.float32), out.astype(jnp.float32))[..., None]
  q_pad = -(-q_len // block_q) * block_q
  group = heads // kv_heads
  dq, dk, dv = backend.backward(
    _padded(q, block_q, width),
    _padded(k, block_k, width),
    _padded(v, block_k, width),
    _padded(dout.astype(q.dtype), block_q, width),
    _pad(lse, 2, q_pad),
    _pad(delta, 2, q_pad),
    bmap,
    head_dim**-0.5,
    k.dtype if group == 1 else jnp.float32,
  )

  def per_kv_head(grad, like):
    grad = grad[:, :k_len, :, :head_dim].reshape(batch, k_len, kv_heads, group, head_dim)
    return grad.sum(axis=3).astype(like.dtype)

  mask_grad = jax.tree.map(lambda _: None, mask)
  return (
    dq[:, :q_len, :, :head_dim].astype(q.dtype),
    per_kv_head(dk, k),
    per_kv_head(dv, v),
    mask_grad,
  )


_flash.defvjp(_flash_fwd, _flash_bwd)
