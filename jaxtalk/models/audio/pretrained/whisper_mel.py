"""Whisper's log-mel front end in jnp, as its feature extractor computes it.

Framing differs from `jaxtalk.models.audio.mel`: frame k is centred on sample k * hop (the signal is
reflect-padded by n_fft // 2 at both ends, the last frame dropped), giving N // hop frames. The
spectrum is the power of a periodic-Hann-windowed n_fft-point DFT, through Slaney mel filters
from 0 to 8 kHz. Compression: log10(max(mel, 1e-10)), floored at 8 below the loudest value of the
whole input (Whisper's dynamic range), then (x + 4) / 4. The floor makes every value depend on the
input's maximum, which is why Whisper always sees one 30-second window at a time.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.models.audio.mel import mel_filterbank, windowed_dft_basis
from jaxtalk.timebase import SAMPLE_RATE

MEL_FLOOR = 1e-10
DYNAMIC_RANGE = 8.0  # log10 units: 80 dB


def whisper_log_mel(
  waveform: jax.Array,
  *,
  n_mels: int,
  n_fft: int = 400,
  hop_length: int = 160,
  sample_rate: int = SAMPLE_RATE,
) -> jax.Array:
  """waveform [B, N] -> log-mel [B, N // hop_length, n_mels], float32."""
  waveform = jnp.asarray(waveform, jnp.float32)
  num_frames = waveform.shape[-1] // hop_length
  padded = jnp.pad(waveform, ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
  frames = padded[:, np.arange(num_frames)[:, None] * hop_length + np.arange(n_fft)]
  cos_basis, sin_basis = windowed_dft_basis(n_fft, n_fft)
  highest = jax.lax.Precision.HIGHEST
  real = jnp.matmul(frames, cos_basis, precision=highest)
  imag = jnp.matmul(frames, sin_basis, precision=highest)
  filters = mel_filterbank(sample_rate, n_fft, n_mels, 0.0, 8000.0)
  mel = jnp.matmul(real * real + imag * imag, filters, precision=highest)
  log_mel = jnp.log10(jnp.maximum(mel, MEL_FLOOR))
  log_mel = jnp.maximum(log_mel, jnp.max(log_mel, axis=(1, 2), keepdims=True) - DYNAMIC_RANGE)
  return (log_mel + 4.0) / 4.0
