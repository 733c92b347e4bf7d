"""The small trainable audio encoder: log-mel frames stacked per video frame, residual convolutions.

Every audio encoder (this one, or an imported pretrained speech model in `pretrained/`) keeps one
interface: `encoder.apply(params, waveform [B, N]) -> [B, N // SAMPLES_PER_FRAME, dim]`, feature i
describing video frame i; `context_frames`, how much audio beyond a span the encoder must hear so
that the span's edge frames come out as they would mid-file; and `is_frozen(path)`, which of its
parameters training must leave as they are. The motion transformer only sees this.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxtalk.models.audio.mel import log_mel
from jaxtalk.models.layers import partitioned
from jaxtalk.timebase import SAMPLE_RATE, SAMPLES_PER_FRAME

MEL_HOP = 160  # 10 ms at 16 kHz: 4 mel frames per video frame
# Each residual conv sees +-2 frames.
_CONV_TAPS = 5


class MelAudioEncoder(nn.Module):
  """Log-mel frames stacked per video frame, then residual temporal convolutions.

  A video frame spans 640 samples = 4 mel hops; the 4 mel frames of each video frame are
  concatenated, so features are frame-aligned by construction, with no learned resampling. The
  receptive field is +-2 frames per layer (+-240 ms at 3 layers).
  """

  dim: int
  n_mels: int
  layers: int
  dtype: jnp.dtype

  @property
  def context_frames(self) -> int:
    # Each conv reaches 2 frames further; below them, a frame's mel windows (400 samples around
    # hops of 160) reach 200 samples into the frames beside it.
    return self.layers * (_CONV_TAPS // 2) + 1

  def is_frozen(self, path: tuple[str, ...]) -> bool:
    del path
    return False

  @nn.compact
  def __call__(self, waveform):
    batch, samples = waveform.shape
    frames = samples // SAMPLES_PER_FRAME
    mels_per_frame = SAMPLES_PER_FRAME // MEL_HOP
    mel = log_mel(waveform, sample_rate=SAMPLE_RATE, hop_length=MEL_HOP, n_mels=self.n_mels)
    x = mel[:, : frames * mels_per_frame].reshape(batch, frames, mels_per_frame * self.n_mels)
    kernel = lambda axes: partitioned(nn.initializers.lecun_normal(), axes)
    x = nn.Dense(self.dim, dtype=self.dtype, kernel_init=kernel((None, "audio_embed")))(x)
    for i in range(self.layers):
      y = nn.LayerNorm(dtype=self.dtype)(x)
      y = nn.Conv(
        self.dim,
        (_CONV_TAPS,),
        padding="SAME",
        dtype=self.dtype,
        name=f"conv_{i}",
        kernel_init=kernel((None, "conv_in", "audio_embed")),
      )(nn.gelu(y))
      x = x + y
    return nn.LayerNorm(dtype=self.dtype, name="out_norm")(x)
