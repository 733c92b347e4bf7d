"""Audio encoders: 16 kHz waveform in, features aligned to video frames out.

The interface every encoder (this small trainable one, or an imported pretrained speech model) keeps:
`encoder.apply(params, waveform [B, N]) -> [B, N // samples_per_frame, dim]`, feature i describing
video frame i. The motion transformer only sees this.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxtalk.audio.mel import log_mel

MEL_HOP = 160  # 10 ms at 16 kHz


class MelAudioEncoder(nn.Module):
  """Log-mel frames stacked per video frame, then residual temporal convolutions.

  At 16 kHz and 25 fps a video frame spans 640 samples = 4 mel hops; the 4 mel frames of each video
  frame are concatenated, so features are frame-aligned by construction, with no learned resampling.
  Each residual conv sees +-2 frames, so the receptive field is +-2*layers frames (+-240 ms at 3).
  """
  dim: int = 128
  n_mels: int = 80
  layers: int = 3
  sample_rate: int = 16000
  fps: int = 25
  dtype: jnp.dtype = jnp.float32

  @property
  def samples_per_frame(self) -> int:
    return self.sample_rate // self.fps

  @nn.compact
  def __call__(self, waveform):
    batch, samples = waveform.shape
    frames = samples // self.samples_per_frame
    mels_per_frame = self.samples_per_frame // MEL_HOP
    mel = log_mel(waveform, sample_rate=self.sample_rate, hop_length=MEL_HOP, n_mels=self.n_mels)
    x = mel[:, :frames * mels_per_frame].reshape(batch, frames, mels_per_frame * self.n_mels)
    conv_init = lambda axes: nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes)
    x = nn.Dense(self.dim, dtype=self.dtype, kernel_init=conv_init((None, "audio_embed")))(x)
    for i in range(self.layers):
      y = nn.LayerNorm(dtype=self.dtype)(x)
      y = nn.Conv(self.dim, (5,), padding="SAME", dtype=self.dtype, name=f"conv_{i}",
                  kernel_init=conv_init((None, "conv_in", "audio_embed")))(nn.gelu(y))
      x = x + y
    return nn.LayerNorm(dtype=self.dtype, name="out_norm")(x)


def make_audio_encoder(audio_cfg, data_cfg, dtype=jnp.float32) -> nn.Module:
  """The encoder a config names. Pretrained encoders plug in here."""
  if audio_cfg.encoder != "mel":
    raise ValueError(f"unknown audio encoder {audio_cfg.encoder!r}; this build has: mel")
  return MelAudioEncoder(dim=audio_cfg.dim, n_mels=audio_cfg.n_mels, layers=audio_cfg.layers,
                         sample_rate=data_cfg.sample_rate, fps=data_cfg.fps, dtype=dtype)
