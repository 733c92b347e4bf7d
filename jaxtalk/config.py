"""The base experiment config. Files in `configs/` start from it and override a few keys.

Every key a run reads is declared here, so a typo on the command line (`--config.motoin.depth=8`)
is rejected by ml_collections instead of silently ignored.
"""

from __future__ import annotations

import ml_collections

# Logical axis name -> mesh axes. Model code names logical axes only; this table decides sharding.
DEFAULT_AXIS_RULES = (
  ("batch", ("data", "fsdp")),
  ("length", None),
  ("embed", "fsdp"),
  ("audio_embed", "fsdp"),
  ("mlp", "tensor"),
  ("heads", "tensor"),
  ("kv", None),
  ("conv_in", "fsdp"),
  ("conv_out", "tensor"),
)


def _train(batch_size, num_steps, learning_rate, warmup_steps):
  return ml_collections.ConfigDict(
    dict(
      batch_size=batch_size,
      num_steps=num_steps,
      learning_rate=learning_rate,
      warmup_steps=warmup_steps,
      end_learning_rate_factor=0.1,
      weight_decay=0.01,
      grad_clip=1.0,
      ema_decay=0.999,
      log_every=25,
      checkpoint_every=500,
    )
  )


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.stage = "renderer"  # which stage train.py trains: "renderer" (stage 1) or "motion" (stage 2)

  c.data = ml_collections.ConfigDict(
    dict(
      train_dir="data/synthtalk",  # ArrayRecord shards (python -m jaxtalk.data.synthtalk / ingest)
      image_size=64,
      fps=25,
      sample_rate=16000,
      windows_per_clip=4,
    )
  )

  c.audio = ml_collections.ConfigDict(
    dict(
      encoder="mel",  # "mel" (trained from scratch) or a pretrained "wav2vec2", "hubert", "whisper"
      dim=128,  # feature width the motion model sees
      n_mels=80,
      layers=3,  # mel encoder
      # Pretrained encoders (jaxtalk/audio/pretrained): a local Hugging Face folder, never downloaded.
      checkpoint="",  # folder with config.json + model.safetensors
      layer=-1,  # hidden state fed to the motion model (0: before the first layer, -1: the output) ...
      weighted_layers=False,  # ... or a learned softmax-weighted sum of all of them
      trainable=False,  # fine-tune the pretrained weights too (default: only layer weights + projection)
      segment_seconds=20.0,
      context_seconds=1.0,  # long audio: windows, and context kept on each side
      architecture={},  # filled in from the checkpoint by training, so bundles need no folder
    )
  )

  # Model sections hold exactly the fields of their Flax module (jaxtalk/models/build.py).
  c.motion_encoder = ml_collections.ConfigDict(
    dict(
      num_tokens=4,
      token_dim=8,
      grid_size=8,
      patch_size=1,
      base_channels=16,
      max_channels=64,
      pool_heads=4,
    )
  )
  c.renderer = ml_collections.ConfigDict(
    dict(
      base_channels=32,
      channel_mults=(1, 2, 2),
      blocks_per_level=1,
      patch_size=4,
      attention_heads=4,
      cond_dim=128,
    )
  )
  c.motion = ml_collections.ConfigDict(
    dict(
      dim=128,
      depth=4,
      heads=4,
      mlp_ratio=4.0,
      chunk_size=4,
      lookback_chunks=6,
      audio_radius=3,
      rope_fraction=0.5,
    )
  )

  c.renderer_train = _train(batch_size=16, num_steps=3500, learning_rate=1e-3, warmup_steps=100)
  c.renderer_train.ema_decay = 0.998  # short demo runs: the EMA must forget the init within them
  c.renderer_train.time_schedule = "logit_normal"
  c.renderer_train.time_logit_mean = (
    -1.0
  )  # flow times lean to noise, where only motion tells the frame
  c.renderer_train.change_boost = 4.0  # extra loss weight of pixels that differ from the reference
  # Colour jitter of the driving frames, to keep identity out of the motion latent. Off for the
  # demo: its bottleneck keeps identity out, and the demo model was trained without it.
  c.renderer_train.appearance_jitter = 0.0
  c.renderer_train.latent_spread = 0.5  # least std of a latent dim between frames of one clip
  c.motion_train = _train(batch_size=16, num_steps=3000, learning_rate=1e-3, warmup_steps=100)
  c.motion_train.ema_decay = 0.998
  c.motion_train.window_frames = 32
  c.motion_train.audio_dropout = 0.1  # drop the audio of this fraction of examples (for guidance)

  c.sample = ml_collections.ConfigDict(
    dict(render_steps=6, motion_steps=8, chunks_in_flight=2, cfg_scale=2.0, batch_frames=32)
  )

  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  c.axis_rules = DEFAULT_AXIS_RULES
  c.compute_dtype = "float32"
  return c
