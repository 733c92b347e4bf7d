"""Building blocks shared by the jaxtalk models.

Every parameter is created through `nn.with_logical_partitioning`, so it carries logical axis names
that the sharding rules in the configs (`jaxtalk.config`) map onto the device mesh. Weights and
activations have names of their own, so that the rules can split a weight's width over one mesh
axis (FSDP) and leave the same width of an activation whole. Weight names:

- dense kernels: "embed" (model width), "mlp" (hidden / projected width);
- attention projections keep their heads axes, [embed, heads, kv] in and [heads, kv, embed] out
  ("kv": the features of one head), so "heads" sharding splits whole heads (`HeadsDense`);
- convolution kernels: `(None, None, "conv_in", "conv_out")`, i.e. only the channel axes shard;
- layers stacked by `nn.scan`: a leading "layers" axis;
- small axes (3x3 taps, a handful of tokens, RGB) stay `None` (replicated).

Activation names ("activation_batch", "activation_length", "activation_embed", "activation_heads",
"activation_kv", "activation_mlp") are grouped by the kind of tensor in `TOKENS`, `HEADS` and
`HIDDEN`.

Parameters are float32; `dtype` fields set the compute dtype (float32 or bfloat16).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtalk.kernels import FullMask, Mask, attention

Axes = Sequence[str | None]

# Logical names of activations: a token sequence [B, L, D], its attention heads [B, L, H, D] and
# an MLP's hidden layer [B, L, F].
TOKENS = ("activation_batch", "activation_length", "activation_embed")
HEADS = ("activation_batch", "activation_length", "activation_heads", "activation_kv")
HIDDEN = ("activation_batch", "activation_length", "activation_mlp")

# What a rematerialised block keeps for the backward pass (the config's `remat` keys); the rest is
# recomputed there. MaxText calls these "full" and "minimal".
REMAT_POLICIES = {
  "full": jax.checkpoint_policies.nothing_saveable,  # only the block's inputs
  "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # and its projections' outputs
}


def partitioned(init: Callable, axes: Axes) -> Callable:
  """`init` wrapped so the parameter carries the logical axis names `axes`."""
  return nn.with_logical_partitioning(init, tuple(axes))


def dense(
  features: int,
  axes: tuple[str | None, str | None],
  *,
  dtype=jnp.float32,
  zero: bool = False,
  use_bias: bool = True,
  name: str | None = None,
) -> nn.Dense:
  """`nn.Dense` with logical axes `(in_axis, out_axis)`; `zero=True` starts it at exactly zero."""
  kernel = nn.initializers.zeros_init() if zero else nn.initializers.xavier_uniform()
  return nn.Dense(
    features,
    use_bias=use_bias,
    dtype=dtype,
    name=name,
    kernel_init=partitioned(kernel, axes),
    bias_init=partitioned(nn.initializers.zeros_init(), axes[-1:]),
  )


def remat(module: type[nn.Module], policy: str, **kwargs) -> type[nn.Module]:
  """`module` rematerialised by `policy`, a key of `REMAT_POLICIES` or "none" (`module` itself).

  `kwargs` go to `nn.remat` (`static_argnums`, `prevent_cse`). Parameters keep their names either
  way, so a checkpoint does not depend on the policy.
  """
  if policy == "none":
    return module
  if policy not in REMAT_POLICIES:
    raise ValueError(f"remat must be 'none' or one of {sorted(REMAT_POLICIES)}, not {policy!r}")
  return nn.remat(module, policy=REMAT_POLICIES[policy], **kwargs)


class HeadsDense(nn.Module):
  """A dense layer whose kernel keeps the attention heads as axes of their own.

  The kernel is `[*contracted, *features]`, the contracted axes being the last `contract` axes of
  the input: [embed] -> [heads, head_dim] for a query, [heads, head_dim] -> [embed] for the output
  projection. `axes` names every kernel axis; the bias has the output axes. `nn.Dense` kernels are
  2-D and `nn.DenseGeneral` creates its kernel flat and reshapes it, so neither can carry the
  heads' logical names. The initialisation is that of a flat `dense` of the same sizes.
  """

  features: tuple[int, ...]
  axes: Axes
  contract: int = 1
  zero: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    contracted = x.shape[x.ndim - self.contract :]
    fans = dict(
      in_axis=tuple(range(self.contract)),
      out_axis=tuple(range(self.contract, self.contract + len(self.features))),
    )
    init = nn.initializers.zeros_init() if self.zero else nn.initializers.xavier_uniform(**fans)
    kernel = self.param(
      "kernel", partitioned(init, self.axes), contracted + tuple(self.features), jnp.float32
    )
    bias = self.param(
      "bias",
      partitioned(nn.initializers.zeros_init(), self.axes[self.contract :]),
      tuple(self.features),
      jnp.float32,
    )
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    return jnp.tensordot(x, kernel, self.contract) + bias


def conv(
  features: int,
  *,
  kernel_size: int = 3,
  strides: int = 1,
  dtype=jnp.float32,
  zero: bool = False,
  name: str | None = None,
) -> nn.Conv:
  """Square 'SAME' convolution with channel axes ("conv_in", "conv_out"); `zero` for residual ends."""
  kernel = nn.initializers.zeros_init() if zero else nn.initializers.lecun_normal()
  return nn.Conv(
    features,
    (kernel_size, kernel_size),
    strides=(strides, strides),
    padding="SAME",
    dtype=dtype,
    name=name,
    kernel_init=partitioned(kernel, (None, None, "conv_in", "conv_out")),
    bias_init=partitioned(nn.initializers.zeros_init(), ("conv_out",)),
  )


def layer_norm(*, affine: bool = True, dtype=jnp.float32, name: str | None = None) -> nn.LayerNorm:
  """LayerNorm over "embed"; `affine=False` when a modulation supplies the scale and shift."""
  return nn.LayerNorm(
    use_scale=affine,
    use_bias=affine,
    dtype=dtype,
    name=name,
    scale_init=partitioned(nn.initializers.ones_init(), ("embed",)),
    bias_init=partitioned(nn.initializers.zeros_init(), ("embed",)),
  )


def group_norm(
  channels: int, max_groups: int = 8, *, dtype=jnp.float32, name: str | None = None
) -> nn.GroupNorm:
  """GroupNorm with gcd(channels, max_groups) groups, so any channel count works."""
  return nn.GroupNorm(
    num_groups=math.gcd(channels, max_groups),
    dtype=dtype,
    name=name,
    scale_init=partitioned(nn.initializers.ones_init(), ("conv_out",)),
    bias_init=partitioned(nn.initializers.zeros_init(), ("conv_out",)),
  )


def space_to_depth(x: jax.Array, patch: int) -> jax.Array:
  """[B, H, W, C] -> [B, H/patch, W/patch, patch*patch*C]."""
  batch, height, width, channels = x.shape
  x = x.reshape(batch, height // patch, patch, width // patch, patch, channels)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(batch, height // patch, width // patch, -1)


def depth_to_space(x: jax.Array, patch: int) -> jax.Array:
  """Inverse of `space_to_depth`."""
  batch, height, width, channels = x.shape
  x = x.reshape(batch, height, width, patch, patch, channels // (patch * patch))
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(batch, height * patch, width * patch, -1)


def timestep_embedding(
  t: jax.Array, dim: int, *, scale: float = 1000.0, max_period: float = 10_000.0
) -> jax.Array:
  """Sinusoidal embedding of flow time: any shape `t` -> `t.shape + (dim,)`, float32.

  Flow time lives in [0, 1]; it is multiplied by `scale` first so the frequencies (periods from 1 to
  `max_period`) resolve the small time differences between sampling steps, as with the integer
  timesteps of DDPM.
  """
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  angles = (jnp.asarray(t, jnp.float32) * scale)[..., None] * freqs
  embedding = jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)
  if dim % 2:
    embedding = jnp.concatenate([embedding, jnp.zeros_like(embedding[..., :1])], axis=-1)
  return embedding


def broadcast_features(a: jax.Array, ndim: int) -> jax.Array:
  """Insert axes before the feature axis of `a` until it has `ndim` axes.

  Lets one conditioning vector per example [B, C] act on a sequence [B, L, C] or an image
  [B, H, W, C].
  """
  return a.reshape(a.shape[:-1] + (1,) * (ndim - a.ndim) + a.shape[-1:])


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
  """`x * (1 + scale) + shift`, features last; shift/scale broadcast as in `broadcast_features`."""
  shift, scale = broadcast_features(shift, x.ndim), broadcast_features(scale, x.ndim)
  return x * (1 + scale.astype(x.dtype)) + shift.astype(x.dtype)


class Modulation(nn.Module):
  """adaLN-zero: `num_chunks` vectors of `features` each, computed from a conditioning vector.

  The projection starts at zero, so every scale, shift and gate is 0 at initialisation: a block
  whose residual branch is multiplied by its gate starts as the identity (DiT's adaLN-Zero), and a
  modulated norm starts as a plain norm.
  """

  features: int
  num_chunks: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, cond: jax.Array) -> list[jax.Array]:
    out = dense(
      self.features * self.num_chunks,
      ("embed", "mlp"),
      dtype=self.dtype,
      zero=True,
      name="projection",
    )(nn.silu(cond))
    # Scales, shifts and gates act on the tokens (or the image), so they are laid out as those
    # are, not as the projection's output, split over "mlp". Left to XLA's sharding propagation,
    # that layout meets a partitioner bug of jax 0.10.2 that computes wrong values with FSDP and
    # tensor parallelism together (tests/test_parallel.py).
    names = TOKENS if out.ndim == 3 else (TOKENS[0], TOKENS[-1])
    return [nn.with_logical_constraint(c, names) for c in jnp.split(out, self.num_chunks, axis=-1)]


class Mlp(nn.Module):
  """Two dense layers with a GELU between; the output has the input's width."""

  hidden_dim: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B, L, D] -> [B, L, D]."""
    h = nn.gelu(dense(self.hidden_dim, ("embed", "mlp"), dtype=self.dtype, name="fc_in")(x))
    h = nn.with_logical_constraint(h, HIDDEN)
    return dense(x.shape[-1], ("mlp", "embed"), dtype=self.dtype, name="fc_out")(h)


class MultiHeadAttention(nn.Module):
  """Self- or cross-attention through `jaxtalk.kernels.attention`.

  `zero_output` starts the output projection at zero so a residual attention branch begins as a
  no-op.
  """

  num_heads: int
  head_dim: int
  zero_output: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(
    self, x: jax.Array, context: jax.Array | None = None, *, mask: Mask | None = None
  ) -> jax.Array:
    """x [B, Lq, Dq] attends to context [B, Lk, Dk] (x itself when None) -> [B, Lq, Dq]."""
    context = x if context is None else context

    def project(name, inputs):
      heads = HeadsDense(
        (self.num_heads, self.head_dim), ("embed", "heads", "kv"), dtype=self.dtype, name=name
      )(inputs)
      return nn.with_logical_constraint(heads, HEADS)

    q, k, v = project("query", x), project("key", context), project("value", context)
    out = attention(q, k, v, mask if mask is not None else FullMask())
    return HeadsDense(
      (x.shape[-1],),
      ("heads", "kv", "embed"),
      contract=2,
      zero=self.zero_output,
      dtype=self.dtype,
      name="out",
    )(out)


class ConditionedTransformerBlock(nn.Module):
  """Pre-norm transformer block: self-attention, optional cross-attention, MLP.

  Self-attention and MLP are modulated by `cond` (adaLN-zero, see `Modulation`); cond is one
  vector per example [B, C] or one per token [B, L, C]. The cross-attention branch has a zero-init
  output projection. Every branch therefore starts at zero and the block starts as the identity.
  """

  num_heads: int
  head_dim: int
  mlp_ratio: float = 4.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    cond: jax.Array,
    context: jax.Array | None = None,
    *,
    self_mask: Mask | None = None,
    cross_mask: Mask | None = None,
  ) -> jax.Array:
    """x [B, L, D], cond [B, C] or [B, L, C], context [B, Lc, Dc] or None -> [B, L, D]."""
    width = x.shape[-1]
    shift1, scale1, gate1, shift2, scale2, gate2 = Modulation(
      width, 6, self.dtype, name="modulation"
    )(cond)
    gate1, gate2 = broadcast_features(gate1, x.ndim), broadcast_features(gate2, x.ndim)

    h = modulate(layer_norm(affine=False, dtype=self.dtype, name="norm_self")(x), shift1, scale1)
    x = x + gate1 * MultiHeadAttention(
      self.num_heads, self.head_dim, dtype=self.dtype, name="self_attention"
    )(h, mask=self_mask)
    if context is not None:
      h = layer_norm(dtype=self.dtype, name="norm_cross")(x)
      x = x + MultiHeadAttention(
        self.num_heads, self.head_dim, zero_output=True, dtype=self.dtype, name="cross_attention"
      )(h, context, mask=cross_mask)
    h = modulate(layer_norm(affine=False, dtype=self.dtype, name="norm_mlp")(x), shift2, scale2)
    x = x + gate2 * Mlp(int(width * self.mlp_ratio), dtype=self.dtype, name="mlp")(h)
    return nn.with_logical_constraint(x, TOKENS)


class ResBlock(nn.Module):
  """Convolutional residual block, optionally conditioned by AdaGN.

  norm -> SiLU -> conv -> norm (scale/shift from `cond` when given) -> SiLU -> conv (zero-init),
  plus a 1x1 projection of the input when the width changes. The zero-init last conv makes the
  block the identity (or that projection) at initialisation, as in ADM; the AdaGN projection is zero-init too, so
  conditioning starts neutral and is learned.
  """

  features: int
  max_groups: int = 8
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, cond: jax.Array | None = None) -> jax.Array:
    """x [B, H, W, C], cond [B, Cc] or None -> [B, H, W, features]."""
    h = nn.silu(group_norm(x.shape[-1], self.max_groups, dtype=self.dtype, name="norm_in")(x))
    h = conv(self.features, dtype=self.dtype, name="conv_in")(h)
    h = group_norm(self.features, self.max_groups, dtype=self.dtype, name="norm_out")(h)
    if cond is not None:
      shift, scale = Modulation(self.features, 2, self.dtype, name="modulation")(cond)
      h = modulate(h, shift, scale)
    h = conv(self.features, dtype=self.dtype, zero=True, name="conv_out")(nn.silu(h))
    if x.shape[-1] != self.features:
      x = conv(self.features, kernel_size=1, dtype=self.dtype, name="skip")(x)
    return x + h
