"""The demo config shrunk for tests: every model at its fewest layers, at 16x16, tiny batches.
Compiling, not running, is what takes the time in the tests that use it."""

import jax.numpy as jnp

from jaxtalk.bench.model import DEMO_CONFIG, load_config_file

# A renderer module small enough that compiling it, which dominates the tests that build one
# directly, stays short; warp_channels > 0 turns on its warp path.
TINY_RENDERER = dict(
  base_channels=16,
  channel_mults=(1,),
  blocks_per_level=1,
  patch_size=2,
  attention_heads=2,
  cond_dim=32,
  warp_channels=0,
  warp_stride=4,
  warp_blocks=1,
  remat="none",
  dtype=jnp.float32,
)


def tiny_config():
  config = load_config_file(DEMO_CONFIG)
  # The demo's familiar-face threshold was measured on its trained renderer; an untrained tiny one
  # redraws every portrait badly, so the check is off unless a test turns it on.
  config.data.update(image_size=16, familiar_psnr=0.0)
  config.audio.update(dim=16, n_mels=20, layers=1)
  config.motion_encoder.update(num_tokens=2, token_dim=4, base_channels=8, max_channels=16)
  config.renderer.update(
    base_channels=8, channel_mults=(1,), blocks_per_level=0, attention_heads=2, cond_dim=32
  )
  config.motion.update(dim=32, depth=1, heads=2, chunk_size=4, lookback_chunks=2, audio_radius=2)
  config.sample.update(render_steps=2, motion_steps=2, chunks_in_flight=2, batch_frames=8)
  config.renderer_train.batch_size = 2
  config.motion_train.update(batch_size=2, window_frames=8)
  return config
