"""The bundled demo: 128x128 SynthTalk faces speaking espeak-ng sentences, trained on a 2-core CPU.

  python -m jaxtalk.data.synthtalk --out data/synthtalk
  python train.py --config configs/demo.py --workdir runs/demo

The renderer warps the portrait and blends the result with what its U-Net draws
(`renderer.warp_channels`), so every pixel the warp can explain is the portrait's own; 8x8 pixel
patches keep its U-Net at the 64x64 demo's cost.
"""

from jaxtalk.config import base_config


def get_config():
  config = base_config()
  # SynthTalk frames head and shoulders: its eye-to-mouth distance is 0.156 of the frame, and the
  # face detector's box spans 0.49 box heights from eyes to mouth (measured on the astronaut).
  config.data.update(train_dir="data/synthtalk", image_size=128, face_crop_scale=3.1)
  # Held-out SynthTalk portraits redraw at 24.4 dB or more (median 30.0); the real photographs
  # of `jaxtalk.eval.photos` at 16.7-23.1 dB: below 24, sampling says the face is unfamiliar.
  config.data.familiar_psnr = 24.0
  config.audio.update(dim=128, layers=3)
  config.motion_encoder.update(
    num_tokens=4, token_dim=8, patch_size=2, base_channels=16, max_channels=64
  )
  config.renderer.update(
    base_channels=48,
    channel_mults=(1, 2, 2),
    blocks_per_level=1,
    patch_size=8,  # 8x8 pixel patches: what makes the renderer cheap enough for a CPU
    attention_heads=4,
    cond_dim=128,
    warp_channels=32,
    warp_stride=4,
    warp_blocks=2,
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
  # Lighting varies between SynthTalk identities but not within a clip: no colour jitter needed.
  # The warp's loss 4x the base config's: at 600 steps it lifts the warp's PSNR gain over the
  # unwarped portrait from +0.53 to +0.74 dB alone, to +0.87 with the pose jitter (README).
  config.renderer_train.update(num_steps=5_000, appearance_jitter=0.0, warp_loss=4.0, **short_run)
  # Stage 2 at 6,000 steps: the acting controls and the emotion inferred from the voice are more
  # to learn than lip sync alone (3,000 before them).
  config.motion_train.update(num_steps=6_000, window_frames=32, **short_run)
  # 3 renderer steps: measured on 20 held-out clips, 2 steps give 23.6 dB and mouth Pearson 0.745
  # but 27.8 blinks a minute (truth 16.5); 3 give 23.1 dB, 0.740 and 20.2; 6 are grainier still.
  # Audio guidance 2, not 3: 3 reads a little better on held-out SynthTalk (seeds 0 / 1: mouth
  # Pearson 0.752 / 0.741 against 0.740 / 0.731, pose amplitude 0.43 / 0.42 against 0.39 / 0.38)
  # but worse on the real photographs (`jaxtalk.eval.photos`, loudness correlation: astronaut
  # 0.08 / -0.08 against 0.31 / 0.30, lfw-3 0.05 / 0.04 against -0.05 / 0.43).
  # Emotion guidance 2 when an emotion is given, as the audio's (README: acting results).
  config.sample.update(
    render_steps=3,
    motion_steps=8,
    chunks_in_flight=2,
    cfg_scale=2.0,
    emotion_cfg_scale=2.0,
    batch_frames=32,
  )
  return config
