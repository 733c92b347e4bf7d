"""The plain `jnp` attention: runs on any backend, and is the source of truth for every kernel."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxtalk.kernels.masks import FullMask, Mask


def reference_attention(
  q: jax.Array, k: jax.Array, v: jax.Array, mask: Mask | None = None
) -> jax.Array:
  """Softmax attention over [batch, length, heads, head_dim]; grouped-query when k/v have fewer heads.

  Scores and softmax run in float32 whatever the input dtype. A query that sees no key at all
  returns zeros instead of NaN (it happens for padding rows).
  """
  batch, q_len, heads, head_dim = q.shape
  k_len, kv_heads = k.shape[1], k.shape[2]
  group = heads // kv_heads
  q = q.reshape(batch, q_len, kv_heads, group, head_dim)
  scores = jnp.einsum("bqhgd,bkhd->bhgqk", q, k, preferred_element_type=jnp.float32)
  scores = scores * (head_dim**-0.5)
  visible = (mask or FullMask()).dense(q_len, k_len)[:, :, None]  # [B|1, 1, 1, Q, K]
  scores = jnp.where(visible, scores, -jnp.inf)
  row_max = jnp.max(scores, axis=-1, keepdims=True)
  row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)
  weights = jnp.exp(scores - jax.lax.stop_gradient(row_max))
  denom = jnp.sum(weights, axis=-1, keepdims=True)
  weights = weights / jnp.where(denom > 0, denom, 1.0)
  out = jnp.einsum("bhgqk,bkhd->bqhgd", weights.astype(v.dtype), v)
  return out.reshape(batch, q_len, heads, head_dim)
