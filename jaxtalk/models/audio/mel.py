"""Log-mel spectrogram in jnp: the audio front end, cheap enough to run inside every jitted step.

Framing. Mel frame k is centred on sample k * hop + hop // 2, the middle of the k-th hop-long slice
of the signal, and the signal is zero-padded at both ends so there are exactly N // hop frames for
N samples. At 16 kHz a 10 ms hop (160 samples) gives exactly 4 mel frames per 25 fps video frame
(640 samples): mel frames 4t .. 4t+3 are centred inside video frame t, so features line up with
frames by integer reshaping, with no resampling.

Spectrum. Each frame is a periodic Hann window of `win_length` samples centred in an `n_fft` point
DFT (as torch.stft places it). The DFT is a matmul against a cosine / sine basis with the window
folded in, over the window's non-zero span only: an MXU/tensor-core friendly op on TPU and GPU,
computed at full float32 precision.

Mel scale. Slaney's (linear below 1 kHz, logarithmic above) with area-normalised triangles, the
librosa default that Whisper-style front ends use. The filterbank is built once in numpy.

Compression. log(max(mel power, 1e-5)), then a fixed affine map to roughly [-1, 1]: the floor
(silence) maps to -1, and loud speech peaks near +1. The map is fixed rather than per-utterance, so
a quiet recording stays quiet.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.timebase import SAMPLE_RATE

LOG_FLOOR = 1e-5
# (log(mel) - LOG_CENTRE) / LOG_HALF_RANGE maps the floor, log(1e-5) = -11.5, to -1 and log(mel) =
# 4.5 to +1, about the loudest band of full-scale speech in these units (power of the windowed DFT,
# unnormalised).
LOG_HALF_RANGE = 8.0
LOG_CENTRE = math.log(LOG_FLOOR) + LOG_HALF_RANGE


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
  """Slaney mel scale: 3 mels per 200 Hz up to 1 kHz, then logarithmic (27 mels per factor 6.4)."""
  hz = np.asarray(hz, dtype=np.float64)
  log_step = math.log(6.4) / 27.0
  return np.where(
    hz < 1000.0, hz * 3.0 / 200.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step
  )


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
  mel = np.asarray(mel, dtype=np.float64)
  log_step = math.log(6.4) / 27.0
  return np.where(mel < 15.0, mel * 200.0 / 3.0, 1000.0 * np.exp((mel - 15.0) * log_step))


@functools.cache
def mel_filterbank(
  sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
  """Slaney-normalised triangular mel filters, float32 [n_fft // 2 + 1, n_mels]."""
  if not 0.0 <= fmin < fmax <= sample_rate / 2:
    raise ValueError(
      f"need 0 <= fmin < fmax <= sample_rate / 2, got fmin={fmin}, fmax={fmax}, "
      f"sample_rate={sample_rate}"
    )
  bin_hz = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
  edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
  lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
  rising = (bin_hz - lower) / (centre - lower)
  falling = (upper - bin_hz) / (upper - centre)
  triangles = np.maximum(0.0, np.minimum(rising, falling))
  # Area normalisation: every filter has the same total weight per Hz, so wide high bands are
  # not louder than narrow low ones for white noise.
  triangles *= 2.0 / (upper - lower)
  return triangles.T.astype(np.float32)


@functools.cache
def windowed_dft_basis(n_fft: int, win_length: int) -> tuple[np.ndarray, np.ndarray]:
  """Hann-windowed cosine and sine bases over the window's span, each float32 [win_length, n_fft // 2 + 1].

  Sample j of the window is sample j + (n_fft - win_length) // 2 of the DFT frame; the zero padding
  around the window would only multiply zeros, so it is left out.
  """
  if not 0 < win_length <= n_fft:
    raise ValueError(f"need 0 < win_length <= n_fft, got win_length={win_length}, n_fft={n_fft}")
  window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)  # periodic Hann
  position = np.arange(win_length) + (n_fft - win_length) // 2
  angle = 2.0 * np.pi * np.outer(position, np.arange(n_fft // 2 + 1)) / n_fft
  return (
    (window[:, None] * np.cos(angle)).astype(np.float32),
    (window[:, None] * np.sin(angle)).astype(np.float32),
  )


def log_mel(
  audio: jax.Array,
  *,
  sample_rate: int = SAMPLE_RATE,
  n_fft: int = 512,
  win_length: int = 400,
  hop_length: int = 160,
  n_mels: int = 80,
  fmin: float = 0.0,
  fmax: float = 8000.0,
) -> jax.Array:
  """Scaled log-mel spectrogram: audio [..., N] float32 -> [..., N // hop_length, n_mels] float32.

  See the module docstring for the framing (frame k centred on sample k*hop + hop//2), the
  spectrum and the scaling. Jit-compatible; all keyword arguments are static.
  """
  if win_length < hop_length:
    raise ValueError(
      f"win_length ({win_length}) must be at least hop_length ({hop_length}) to cover every sample"
    )
  audio = jnp.asarray(audio, dtype=jnp.float32)
  num_samples = audio.shape[-1]
  num_frames = num_samples // hop_length
  # Frame k covers [centre - win_length // 2, centre + win_length - win_length // 2) around
  # centre = k * hop + hop // 2: that is [k * hop, k * hop + win_length) after `left` zeros.
  left = win_length // 2 - hop_length // 2
  right = max(0, (num_frames - 1) * hop_length + win_length - left - num_samples)
  padded = jnp.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(left, right)])
  starts = np.arange(num_frames) * hop_length
  frames = padded[..., starts[:, None] + np.arange(win_length)]  # [..., frames, win_length]
  cos_basis, sin_basis = windowed_dft_basis(n_fft, win_length)
  highest = jax.lax.Precision.HIGHEST
  real = jnp.matmul(frames, cos_basis, precision=highest)
  imag = jnp.matmul(frames, sin_basis, precision=highest)
  power = real * real + imag * imag
  mel = jnp.matmul(
    power, mel_filterbank(sample_rate, n_fft, n_mels, float(fmin), float(fmax)), precision=highest
  )
  return (jnp.log(jnp.maximum(mel, LOG_FLOOR)) - LOG_CENTRE) / LOG_HALF_RANGE
