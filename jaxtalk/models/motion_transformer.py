"""Diffusion-forcing motion transformer: denoises a sequence of per-frame motion latents.

Every frame carries its own flow time t (diffusion forcing), so one network serves training on
independently noised frames and the rolling sampler, where older frames are cleaner than newer ones.

Token layout: `[sink, frame_0, ..., frame_{T-1}]`. The sink is the reference motion latent (the
portrait's own expression), always visible, with t = 1 (clean). Self-attention is block-causal over
chunks of `chunk_size` frames with a lookback of `lookback_chunks` chunks; each frame also cross-attends
to a window of audio features around its own time. Rotary position embedding covers only part of each
head (`rope_fraction`): the sink's key has that part zeroed, so how much a frame attends to the
reference does not depend on how far into the video the frame is, however long the audio.

Acting controls (`jaxtalk.data.acting`: emotion with intensity, pose amplitude, blink rate, each
with a flag saying it is given) enter every frame's adaLN conditioning beside its noise level, one
vector per frame, so an emotion can change mid-video; all zeros is "not given" (the model infers
the emotion from the audio, as X-Actor does), which training teaches by dropping each group.

The same `__call__` serves the sampler: pass `kv_context` (every layer's keys/values of the sink and
of finished chunks) instead of `reference`, and the call attends to that cache and returns its own
keys/values so finished chunks can be appended to the cache. Keys and values of all layers travel
stacked, [depth, B, L, heads, head_dim], whether the blocks are unrolled or scanned.

`scan_layers` runs the blocks as one `nn.scan`: XLA compiles one block instead of `depth`, and the
parameters of all blocks are stacked under `blocks` with a leading "layers" axis (unrolled, they
are `block_0`, `block_1`, ...: the same function, laid out otherwise). `remat` names what each block
keeps for the backward pass (`layers.REMAT_POLICIES`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtalk.data.acting import ActingLayout
from jaxtalk.kernels import BlockCausalMask, LocalAudioMask, attention
from jaxtalk.models.layers import (
  HEADS,
  TOKENS,
  HeadsDense,
  Mlp,
  Modulation,
  MultiHeadAttention,
  dense,
  layer_norm,
  modulate,
  partitioned,
  remat,
  timestep_embedding,
)

# `MotionBlock.__call__`'s argument that must stay a Python int under `nn.remat` (self is 0).
_NUM_PREFIX_ARGNUM = 5


def rotary(x: jax.Array, positions: jax.Array, rope_dims: int, base: float = 10_000.0) -> jax.Array:
  """Rotate the first `rope_dims` features of each head by position; x is [B, L, H, D]."""
  half = rope_dims // 2
  inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B|1, L, half]
  cos, sin = jnp.cos(angles)[:, :, None], jnp.sin(angles)[:, :, None]
  x1, x2, rest = x[..., :half], x[..., half:rope_dims], x[..., rope_dims:]
  rotated = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
  return jnp.concatenate([rotated.astype(x.dtype), rest], axis=-1)


class MotionBlock(nn.Module):
  """Self-attention (block-causal + sink), audio cross-attention, MLP; adaLN-zero by noise level.

  Self-attention is written out here rather than taken from `layers.MultiHeadAttention` because the
  sampler needs its keys/values back and feeds cached ones in.
  """

  dim: int
  heads: int
  mlp_ratio: float
  rope_dims: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, h, cond, positions, self_mask, num_prefix, kv_context, audio, audio_mask):
    head_dim = self.dim // self.heads
    shift1, scale1, gate1, shift2, scale2, gate2 = Modulation(
      self.dim, 6, self.dtype, name="modulation"
    )(cond)

    x = modulate(layer_norm(affine=False, dtype=self.dtype, name="norm_self")(h), shift1, scale1)
    qkv = HeadsDense(
      (3, self.heads, head_dim), ("embed", None, "heads", "kv"), dtype=self.dtype, name="qkv"
    )(x)
    q, k, v = jnp.unstack(qkv, axis=2)
    q = rotary(q, positions, self.rope_dims)
    k = rotary(k, positions, self.rope_dims)
    if num_prefix:  # sink keys carry no position (see module docstring)
      is_prefix = (jnp.arange(k.shape[1]) < num_prefix)[None, :, None, None]
      k = jnp.where(is_prefix & (jnp.arange(head_dim) < self.rope_dims), 0, k)
    q, k, v = (nn.with_logical_constraint(a, HEADS) for a in (q, k, v))
    own_kv = (k, v)
    if kv_context is not None:
      k = jnp.concatenate([kv_context[0], k], axis=1)
      v = jnp.concatenate([kv_context[1], v], axis=1)
    out = attention(q, k, v, self_mask)
    h = h + gate1 * HeadsDense(
      (self.dim,), ("heads", "kv", "embed"), contract=2, dtype=self.dtype, name="attn_out"
    )(out)

    frames = h[:, num_prefix:]
    if frames.shape[1]:  # the sink has no time of its own, so it does not listen to the audio
      x = layer_norm(dtype=self.dtype, name="norm_cross")(frames)
      frames = frames + MultiHeadAttention(
        self.heads, head_dim, zero_output=True, dtype=self.dtype, name="audio_attention"
      )(x, audio, mask=audio_mask)
      h = jnp.concatenate([h[:, :num_prefix], frames], axis=1)

    x = modulate(layer_norm(affine=False, dtype=self.dtype, name="norm_mlp")(h), shift2, scale2)
    h = h + gate2 * Mlp(int(self.dim * self.mlp_ratio), dtype=self.dtype, name="mlp")(x)
    return nn.with_logical_constraint(h, TOKENS), own_kv


class MotionTransformer(nn.Module):
  """Predicts the flow velocity of every frame's motion latent (see module docstring)."""

  latent_dim: int
  dim: int
  depth: int
  heads: int
  mlp_ratio: float
  chunk_size: int
  lookback_chunks: int
  audio_radius: int
  rope_fraction: float
  scan_layers: bool
  remat: str
  dtype: jnp.dtype
  emotions: tuple[str, ...] = ()

  @property
  def acting_layout(self) -> ActingLayout:
    return ActingLayout(tuple(self.emotions))

  @property
  def rope_dims(self) -> int:
    return 2 * int(self.dim // self.heads * self.rope_fraction / 2)

  @nn.compact
  def __call__(
    self,
    latents,
    t,
    audio,
    *,
    audio_keep=None,
    acting=None,
    reference=None,
    kv_context=None,
    frame_offset=0,
    context_offset=0,
    audio_offset=0,
  ):
    """Velocity for `latents` [B, T, latent_dim] at flow times `t` [B, T].

    Training: give `reference` [B, latent_dim]; the sink is prepended and attended to in-sequence.
    Sampling: give `kv_context`, the keys/values (k, v) of `[sink, finished frames]`, each
    [depth, B, S, heads, head_dim], whose first finished frame has index `context_offset` (negative
    indices are empty slots). `frame_offset` is the index of `latents[:, 0]`; `audio_offset` the
    audio-feature index of `audio[:, 0]`. `audio_keep` [B] bool drops the audio (classifier-free
    guidance) where False. `acting` [B, T, acting_layout.width] holds each frame's acting controls
    (None: none given).
    Returns (velocity [B, T, latent_dim], (k, v) of this call's tokens, each
    [depth, B, tokens, heads, head_dim]).
    """
    batch, length, _ = latents.shape
    time_mlp = Mlp(self.dim, dtype=self.dtype, name="time_mlp")
    embed_time = lambda tt: time_mlp(timestep_embedding(tt, self.dim))
    h = dense(self.dim, (None, "embed"), dtype=self.dtype, name="latent_in")(latents)
    cond = embed_time(t)
    if acting is None:
      acting = jnp.zeros((batch, length, self.acting_layout.width))
    # Linear, like a class embedding: an emotion's intensity scales its direction.
    cond = cond + dense(self.dim, (None, "embed"), dtype=self.dtype, name="acting_in")(acting)
    positions = frame_offset + jnp.arange(length)[None]

    null_audio = self.param(
      "null_audio", partitioned(nn.initializers.normal(0.02), ("audio_embed",)), (audio.shape[-1],)
    )
    if audio_keep is not None:
      audio = jnp.where(audio_keep[:, None, None], audio, null_audio.astype(audio.dtype))
    audio_mask = LocalAudioMask(self.audio_radius, q_offset=frame_offset, k_offset=audio_offset)

    num_prefix = 0
    if reference is not None:
      sink = dense(self.dim, (None, "embed"), dtype=self.dtype, name="reference_in")(
        reference[:, None]
      )
      sink = sink + self.param(
        "sink_embedding", partitioned(nn.initializers.normal(0.02), (None, "embed")), (1, self.dim)
      )
      h = jnp.concatenate([sink, h], axis=1)
      cond = jnp.concatenate([embed_time(jnp.ones((batch, 1))), cond], axis=1)
      positions = jnp.concatenate([jnp.zeros((1, 1), positions.dtype), positions], axis=1)
      num_prefix = 1
      self_mask = BlockCausalMask(
        self.chunk_size,
        q_prefix=1,
        k_prefix=1,
        lookback_chunks=self.lookback_chunks,
        q_offset=frame_offset,
        k_offset=frame_offset,
      )
    else:
      self_mask = BlockCausalMask(
        self.chunk_size,
        k_prefix=1,
        lookback_chunks=self.lookback_chunks,
        q_offset=frame_offset,
        k_offset=context_offset,
      )

    block = remat(
      MotionBlock,
      self.remat,
      static_argnums=(_NUM_PREFIX_ARGNUM,),
      prevent_cse=not self.scan_layers,  # a scan already keeps XLA from merging the recomputation
    )
    fields = (self.dim, self.heads, self.mlp_ratio, self.rope_dims, self.dtype)
    if self.scan_layers:
      blocks = nn.scan(
        block,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        # Every layer sees the same inputs, except for kv_context: one slice per layer.
        in_axes=(nn.broadcast,) * 4 + (0,) + (nn.broadcast,) * 2,
        length=self.depth,
        metadata_params={nn.PARTITION_NAME: "layers"},
      )(*fields, name="blocks")
      h, own_kvs = blocks(h, cond, positions, self_mask, num_prefix, kv_context, audio, audio_mask)
    else:
      layer_kvs = []
      for i in range(self.depth):
        layer_context = None if kv_context is None else tuple(a[i] for a in kv_context)
        h, layer_kv = block(*fields, name=f"block_{i}")(
          h, cond, positions, self_mask, num_prefix, layer_context, audio, audio_mask
        )
        layer_kvs.append(layer_kv)
      own_kvs = jax.tree.map(lambda *layers: jnp.stack(layers), *layer_kvs)

    frames = h[:, num_prefix:]
    shift, scale = Modulation(self.dim, 2, self.dtype, name="final_modulation")(
      cond[:, num_prefix:]
    )
    frames = modulate(
      layer_norm(affine=False, dtype=self.dtype, name="norm_out")(frames), shift, scale
    )
    velocity = dense(
      self.latent_dim, ("embed", None), dtype=self.dtype, zero=True, name="latent_out"
    )(frames)
    return velocity.astype(jnp.float32), own_kvs
