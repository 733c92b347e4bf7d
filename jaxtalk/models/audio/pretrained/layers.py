"""Layers the speech encoders share, shaped like the reference's so weights import one to one.

Initialisers only matter for shapes and axis names: real values come from the importer. Norms use
the two-pass variance (`use_fast_variance=False`), as PyTorch does, which float32 parity needs.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtalk.kernels import FullMask, attention
from jaxtalk.models.layers import TOKENS, dense, partitioned

ACTIVATIONS = {
  "gelu": functools.partial(nn.gelu, approximate=False),
  "gelu_new": functools.partial(nn.gelu, approximate=True),
  "gelu_pytorch_tanh": functools.partial(nn.gelu, approximate=True),
  "relu": nn.relu,
  "swish": nn.silu,
  "silu": nn.silu,
}


def activation(name: str):
  if name not in ACTIVATIONS:
    raise ValueError(f"activation {name!r} is not supported; known: {', '.join(ACTIVATIONS)}")
  return ACTIVATIONS[name]


def norm(eps: float, *, dtype=jnp.float32, name: str | None = None) -> nn.LayerNorm:
  """LayerNorm over the last ("embed") axis with PyTorch's epsilon semantics."""
  return nn.LayerNorm(
    epsilon=eps,
    use_fast_variance=False,
    dtype=dtype,
    name=name,
    scale_init=partitioned(nn.initializers.ones_init(), ("embed",)),
    bias_init=partitioned(nn.initializers.zeros_init(), ("embed",)),
  )


def conv1d(
  features: int,
  kernel: int,
  *,
  stride: int = 1,
  padding="VALID",
  groups: int = 1,
  use_bias: bool = True,
  dtype=jnp.float32,
  name: str | None = None,
) -> nn.Conv:
  """1-D convolution over [B, T, C]; kernel [k, C / groups, features] as ("conv_in", "conv_out")."""
  return nn.Conv(
    features,
    (kernel,),
    strides=(stride,),
    padding=padding,
    feature_group_count=groups,
    use_bias=use_bias,
    dtype=dtype,
    name=name,
    kernel_init=partitioned(nn.initializers.lecun_normal(), (None, "conv_in", "conv_out")),
    bias_init=partitioned(nn.initializers.zeros_init(), ("conv_out",)),
  )


class SelfAttention(nn.Module):
  """Bidirectional multi-head self-attention with q/k/v/out projections (Whisper: no key bias)."""

  num_heads: int
  key_bias: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    width = x.shape[-1]

    def project(name, use_bias=True):
      out = dense(width, ("embed", "heads"), use_bias=use_bias, dtype=self.dtype, name=name)(x)
      return out.reshape(*out.shape[:-1], self.num_heads, width // self.num_heads)

    out = attention(project("query"), project("key", self.key_bias), project("value"), FullMask())
    out = out.reshape(*out.shape[:-2], width)
    return dense(width, ("heads", "embed"), dtype=self.dtype, name="out")(out)


class EncoderLayer(nn.Module):
  """Transformer layer: attention and MLP branches, post-norm (wav2vec2 base) or pre-norm."""

  num_heads: int
  mlp_dim: int
  eps: float
  act: str
  pre_norm: bool
  key_bias: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    attend = SelfAttention(self.num_heads, self.key_bias, self.dtype, name="attention")
    attention_norm = norm(self.eps, dtype=self.dtype, name="attention_norm")
    mlp_norm = norm(self.eps, dtype=self.dtype, name="mlp_norm")

    def mlp(h):
      h = dense(self.mlp_dim, ("embed", "mlp"), dtype=self.dtype, name="mlp_in")(h)
      return dense(x.shape[-1], ("mlp", "embed"), dtype=self.dtype, name="mlp_out")(
        activation(self.act)(h)
      )

    if self.pre_norm:
      x = x + attend(attention_norm(x))
      x = x + mlp(mlp_norm(x))
    else:
      x = attention_norm(x + attend(x))
      x = mlp_norm(x + mlp(x))
    return nn.with_logical_constraint(x, TOKENS)
