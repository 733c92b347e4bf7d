"""Motion encoder: one face image -> a few motion tokens through a narrow bottleneck.

The latent is all the renderer learns about the target frame besides the reference image, so it
must carry pose and expression; it is kept small (`num_tokens * token_dim` numbers) so that there
is no room for identity, which the renderer gets from the reference anyway. Stage 2 diffuses in
this space, so the latent is layer-normalised over all its numbers: every frame's latent has zero
mean and unit variance, a scale that matches the unit Gaussian noise of flow matching and cannot
drift during training.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtalk.models.layers import ResBlock, conv, dense, group_norm, space_to_depth


class MotionEncoder(nn.Module):
  """Image [B, H, W, 3] in [-1, 1] -> motion tokens [B, num_tokens, token_dim].

  The image is first folded into `patch_size` x `patch_size` patches (space-to-depth, lossless
  and much cheaper than full-resolution convs); a strided conv net then halves the resolution until
  it reaches `grid_size` x `grid_size` (channels doubling from `base_channels` up to
  `max_channels`, one residual block per level), and one dense layer squeezes the whole grid to
  `num_tokens * token_dim` numbers. Works at any square side that is
  `patch_size * grid_size` times a power of two.
  """

  num_tokens: int
  token_dim: int
  grid_size: int
  patch_size: int
  base_channels: int
  max_channels: int
  dtype: jnp.dtype

  @property
  def latent_dim(self) -> int:
    """Numbers per frame in the flattened motion latent (what stage 2 models)."""
    return self.num_tokens * self.token_dim

  @nn.compact
  def __call__(self, image: jax.Array) -> jax.Array:
    batch, height, width, _ = image.shape
    cell = self.patch_size * self.grid_size
    levels = math.log2(height / cell) if height == width else -1
    if levels < 0 or levels != int(levels):
      raise ValueError(
        f"MotionEncoder needs a square image whose side is patch_size * grid_size = "
        f"{cell} times a power of two, got {height}x{width}"
      )
    h = space_to_depth(image.astype(self.dtype), self.patch_size)
    h = conv(self.base_channels, dtype=self.dtype, name="stem")(h)
    for level in range(int(levels)):
      channels = min(self.base_channels * 2 ** (level + 1), self.max_channels)
      h = conv(channels, strides=2, dtype=self.dtype, name=f"down_{level}")(nn.silu(h))
      h = ResBlock(channels, dtype=self.dtype, name=f"block_{level}")(h)
    h = nn.silu(group_norm(h.shape[-1], dtype=self.dtype, name="grid_norm")(h))

    # Flattened, not pooled: where a feature sits on the grid is the head's pose, and a pool over
    # the grid (attention over cells, whose position embedding starts near zero) must first learn to
    # tell cells apart. Measured at equal budget (600 steps of configs/demo.py's stage 1): with the
    # flattened grid the latent carries more of the head's motion (see README, "Results").
    flat = h.reshape(batch, -1)
    latent = dense(self.latent_dim, ("embed", None), dtype=self.dtype, name="bottleneck")(flat)
    latent = nn.LayerNorm(use_scale=False, use_bias=False, name="latent_norm")(
      latent.astype(jnp.float32)
    )
    return latent.reshape(batch, self.num_tokens, self.token_dim)
