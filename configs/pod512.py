"""A TPU pod (or GPU cluster), 512x512: FSDP over 4 devices and tensor parallelism over 2,
data parallelism over the rest (on a v5p-256: data=32, fsdp=4, tensor=2).

  python train.py --config configs/pod512.py --workdir gs://bucket/runs/pod512   # on every host
"""

from jaxtalk.config import base_config


def get_config():
  config = base_config()
  config.compute_dtype = "bfloat16"
  config.data.update(train_dir="data/talk512", image_size=512)
  config.audio.update(dim=768, layers=6)
  config.motion_encoder.max_channels = 512
  config.renderer.update(
    base_channels=192, channel_mults=(1, 2, 3, 4, 4), attention_heads=12, cond_dim=768
  )
  # The 24 blocks run as one scan (the base config's motion.scan_layers). "dots" keeps the matmul
  # outputs and recomputes the rest (elementwise ops, attention) in the backward pass: the motion
  # step's per-chip memory on a v5p-256 drops from 5.5 to 3.1 GiB (2.2 with "full"; measured by
  # python -m jaxtalk.bench.compile with the jnp attention), room for longer windows or batches.
  config.motion.update(dim=1024, depth=24, heads=16, remat="dots")
  config.renderer_train.update(
    batch_size=512,
    num_steps=500_000,
    learning_rate=1e-4,
    warmup_steps=5_000,
    checkpoint_every=2_000,
  )
  config.motion_train.update(
    batch_size=1024,
    num_steps=300_000,
    learning_rate=1e-4,
    warmup_steps=5_000,
    window_frames=96,
    checkpoint_every=2_000,
  )
  config.sample.update(render_steps=16, batch_frames=8)
  config.mesh.update(data=-1, fsdp=4, tensor=2)
  return config
