"""cuDNN attention through `jax.nn.dot_product_attention`, for the masks it expresses natively.

cuDNN knows no mask, causal, padding and a left-only sliding window. Of jaxtalk's masks only the
full mask (with key padding) maps onto that; anything else would reach cuDNN as a dense boolean
mask, which it turns into an additive bias over the whole score matrix and computes in full. That
dense path is kept for the benchmark, as the baseline a user would otherwise reach for.
"""

from __future__ import annotations

import jax

from jaxtalk.kernels.masks import FullMask, Mask


def native_arguments(mask: Mask) -> dict | None:
  """Keyword arguments of `jax.nn.dot_product_attention` expressing `mask`, or None if it cannot."""
  if isinstance(mask, FullMask):
    return {"key_value_seq_lengths": mask.kv_lengths}
  return None


def cudnn_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  mask: Mask,
  *,
  dense_mask: bool = False,
  implementation: str | None = "cudnn",
) -> jax.Array:
  """[B, L, H, D] attention by `jax.nn.dot_product_attention`.

  `dense_mask` passes masks cuDNN cannot express as a boolean matrix (the benchmark's baseline;
  a row that sees no key then differs from the reference). `implementation=None` runs the same
  call through XLA, which is how the argument translation is tested without a GPU.
  """
  arguments = native_arguments(mask)
  if arguments is None:
    if not dense_mask:
      raise ValueError(f"cuDNN cannot express {type(mask).__name__} without a dense mask")
    arguments = {"mask": mask.dense(q.shape[1], k.shape[1])}
  return jax.nn.dot_product_attention(q, k, v, implementation=implementation, **arguments)
