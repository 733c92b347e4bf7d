"""The bundled demo: 64x64 SynthTalk faces, small enough to train on a 2-core CPU in under an hour.

  python -m jaxtalk.data.synthtalk --out data/synthtalk
  python train.py --config configs/demo.py --workdir runs/demo

`jaxtalk/assets/demo/model` was trained with it (stage 1: 3,500 steps, stage 2: 3,000; 38 min).
"""

from jaxtalk.config import base_config


def get_config():
  config = base_config()
  config.data.update(train_dir="data/synthtalk", image_size=64)
  config.audio.update(dim=128, layers=3)
  config.motion_encoder.update(num_tokens=4, token_dim=8, base_channels=16, max_channels=64)
  config.renderer.update(
    base_channels=32,
    channel_mults=(1, 2, 2),
    blocks_per_level=1,
    patch_size=4,  # 4x4 pixel patches: what makes the renderer cheap enough for a CPU
    attention_heads=4,
    cond_dim=128,
  )
  config.motion.update(dim=128, depth=4, heads=4, lookback_chunks=6)
  short_run = dict(
    batch_size=16,
    learning_rate=1e-3,
    warmup_steps=100,
    ema_decay=0.998,  # the EMA must forget the initialisation within a few thousand steps
    log_every=25,
    checkpoint_every=500,
  )
  # No colour jitter: SynthTalk's lighting does not vary, and the demo model was trained without.
  config.renderer_train.update(num_steps=3_500, appearance_jitter=0.0, **short_run)
  config.motion_train.update(num_steps=3_000, window_frames=32, **short_run)
  config.sample.update(
    render_steps=6, motion_steps=8, chunks_in_flight=2, cfg_scale=2.0, batch_frames=32
  )
  return config
