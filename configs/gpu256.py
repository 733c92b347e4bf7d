"""One GPU, 256x256: real datasets (HDTF / VoxCeleb2 clips through python -m jaxtalk.data.ingest).

python -m jaxtalk.data.ingest --videos my_videos/ --out data/talk256 --image-size 256
python train.py --config configs/gpu256.py --workdir runs/gpu256
"""

from jaxtalk.config import base_config


def get_config():
  config = base_config()
  config.stage = "all"
  config.compute_dtype = "bfloat16"
  config.data.train_dir = "data/talk256"
  config.data.image_size = 256
  config.audio.update(dim=512, layers=4)
  config.motion_encoder.update(num_tokens=8, token_dim=16, base_channels=32, max_channels=256)
  config.renderer.update(
    base_channels=128,
    channel_mults=(1, 2, 4, 4),
    blocks_per_level=2,
    patch_size=2,
    attention_heads=8,
    cond_dim=512,
  )
  config.motion.update(dim=512, depth=12, heads=8, lookback_chunks=8)
  config.renderer_train.update(
    batch_size=32,
    num_steps=300_000,
    learning_rate=2e-4,
    warmup_steps=2_000,
    checkpoint_every=5_000,
    log_every=100,
  )
  config.motion_train.update(
    batch_size=64,
    num_steps=200_000,
    learning_rate=2e-4,
    warmup_steps=2_000,
    window_frames=64,
    checkpoint_every=5_000,
    log_every=100,
  )
  config.sample.update(render_steps=12, motion_steps=12, chunks_in_flight=3, batch_frames=16)
  return config
