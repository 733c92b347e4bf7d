"""Warping the reference: a dense motion field from the motion latent, and the bilinear warp.

The renderer's warp-then-refine path (`Renderer.warp_channels`): most of a talking frame is the
reference moved a little (the head turns, the jaw drops). A field that says where each output
pixel comes from moves the reference's own pixels there, so the identity's detail never has to
pass through the narrow motion latent; the diffusion U-Net only refines what a warp cannot make
(the inside of the mouth, what the turn uncovers).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtalk.models.layers import ResBlock, conv, dense, space_to_depth


def warp(image: jax.Array, flow: jax.Array) -> jax.Array:
  """Backward warp: out[b, y, x] = image[b, y + flow[b, y, x, 1], x + flow[b, y, x, 0]].

  image [B, H, W, C]; flow [B, H, W, 2] in pixels, (dx, dy). Bilinear between the four nearest
  pixels; positions outside the image take the nearest border pixel, so a warp never brings in
  black (the background continues instead).
  """
  batch, height, width, channels = image.shape
  ys, xs = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
  x = jnp.clip(xs[None] + flow[..., 0], 0.0, width - 1.0)
  y = jnp.clip(ys[None] + flow[..., 1], 0.0, height - 1.0)
  x0, y0 = jnp.floor(x), jnp.floor(y)
  wx, wy = (x - x0)[..., None], (y - y0)[..., None]
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
  x1, y1 = jnp.minimum(x0 + 1, width - 1), jnp.minimum(y0 + 1, height - 1)
  flat = image.reshape(batch, height * width, channels)

  def gather(yi, xi):
    index = (yi * width + xi).reshape(batch, height * width, 1)
    return jnp.take_along_axis(flat, index, axis=1).reshape(batch, height, width, channels)

  top = gather(y0, x0) * (1 - wx) + gather(y0, x1) * wx
  bottom = gather(y1, x0) * (1 - wx) + gather(y1, x1) * wx
  return top * (1 - wy) + bottom * wy


class MotionField(nn.Module):
  """(reference [B, H, W, 3], motion tokens [B, N, Dm]) -> flow [B, H, W, 2] in pixels.

  The renderer passes the target's and the reference's motion tokens together, so the field knows
  both poses and expressions and its convolutions only have to place the difference.

  Predicted at 1/`stride` of the resolution from the reference's pixels, modulated by the whole
  motion latent, then upsampled bilinearly: a talking face moves in smooth regions, and the low
  resolution gives each cell a wide view of the face at little cost. The output starts at zero,
  so the untrained field leaves the reference where it is.
  """

  channels: int
  stride: int
  blocks: int
  cond_dim: int
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, reference: jax.Array, motion: jax.Array) -> jax.Array:
    batch, height, width, _ = reference.shape
    flat_motion = motion.reshape(batch, -1).astype(self.dtype)
    cond = dense(self.cond_dim, (None, "embed"), dtype=self.dtype, name="motion_in")(flat_motion)
    cond = dense(self.cond_dim, ("embed", "embed"), dtype=self.dtype, name="motion_out")(
      nn.silu(cond)
    )
    h = space_to_depth(reference.astype(self.dtype), self.stride)
    h = conv(self.channels, dtype=self.dtype, name="stem")(h)
    for i in range(self.blocks):
      h = ResBlock(self.channels, dtype=self.dtype, name=f"block_{i}")(h, cond)
    h = nn.silu(h)
    coarse = conv(2, dtype=self.dtype, zero=True, name="flow")(h).astype(jnp.float32)
    # In pixels of the full-resolution image.
    return jax.image.resize(coarse, (batch, height, width, 2), "linear")
