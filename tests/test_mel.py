"""Tests for the jnp log-mel front end, against a plain numpy/scipy reference written here."""

import jax
import numpy as np
import pytest
from scipy import signal

from jaxtalk.models.audio import mel

SR, N_FFT, WIN, HOP, N_MELS = 16000, 512, 400, 160, 80


def reference_filterbank(sample_rate, n_fft, n_mels, fmin, fmax):
  """Slaney mel filters built a second way: mel edges by scalar formulas, triangles by np.interp."""

  def hz_to_mel(hz):
    return hz / (200.0 / 3.0) if hz < 1000.0 else 15.0 + 27.0 * np.log(hz / 1000.0) / np.log(6.4)

  def mel_to_hz(m):
    return m * (200.0 / 3.0) if m < 15.0 else 1000.0 * 6.4 ** ((m - 15.0) / 27.0)

  mels = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
  edges = np.array([mel_to_hz(m) for m in mels])
  freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
  bank = np.zeros((n_mels, len(freqs)))
  for i in range(n_mels):
    lo, mid, hi = edges[i : i + 3]
    bank[i] = (
      np.interp(freqs, [lo, mid, hi], [0.0, 1.0, 0.0], left=0.0, right=0.0) * 2.0 / (hi - lo)
    )
  return bank


def reference_log_mel(audio, n_mels=N_MELS, fmax=8000.0):
  """Explicit framing around centres k*hop + hop//2 in a zero-extended signal, then np.fft.rfft."""
  audio = np.asarray(audio, dtype=np.float64)
  window = np.zeros(N_FFT)
  offset = (N_FFT - WIN) // 2
  window[offset : offset + WIN] = signal.get_window("hann", WIN)  # periodic Hann (fftbins=True)
  extended = np.concatenate([np.zeros(N_FFT), audio, np.zeros(N_FFT)])
  frames = []
  for k in range(len(audio) // HOP):
    start = k * HOP + HOP // 2 - N_FFT // 2 + N_FFT  # + N_FFT: offset of `audio` in `extended`
    frames.append(extended[start : start + N_FFT] * window)
  frames = np.array(frames).reshape(-1, N_FFT)
  power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
  mels = power @ reference_filterbank(SR, N_FFT, n_mels, 0.0, fmax).T
  return (np.log(np.maximum(mels, 1e-5)) - mel.LOG_CENTRE) / mel.LOG_HALF_RANGE


def speechy(num_samples, seed):
  """Harmonics of a gliding pitch under a syllable-rate envelope, plus a little noise."""
  rng = np.random.default_rng(seed)
  t = np.arange(num_samples) / SR
  pitch = 120.0 + 30.0 * np.sin(2 * np.pi * 0.7 * t)
  phase = 2 * np.pi * np.cumsum(pitch) / SR
  voiced = sum(np.sin(h * phase) / h for h in range(1, 20))
  envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t)
  return (0.2 * voiced * envelope + 0.01 * rng.normal(size=num_samples)).astype(np.float32)


@pytest.mark.parametrize("num_samples", [16000, 16077, 1000, 480])
def test_matches_numpy_reference_at_any_length(num_samples):
  audio = np.stack([speechy(num_samples, seed=0), speechy(num_samples, seed=1)[::-1]])
  got = np.asarray(mel.log_mel(audio))
  assert got.shape == (2, num_samples // HOP, N_MELS)
  assert got.dtype == np.float32
  for row in range(2):
    np.testing.assert_allclose(got[row], reference_log_mel(audio[row]), atol=2e-5, rtol=0)


def test_other_band_settings_match_reference():
  audio = speechy(4000, seed=2)[None]
  got = np.asarray(mel.log_mel(audio, n_mels=40, fmax=7600.0))
  np.testing.assert_allclose(
    got[0], reference_log_mel(audio[0], n_mels=40, fmax=7600.0), atol=2e-5, rtol=0
  )


def test_four_mel_frames_per_video_frame_and_jit():
  video_frames = 7
  audio = speechy(video_frames * 640, seed=3)[None]
  jitted = jax.jit(mel.log_mel)(audio)
  assert jitted.shape == (1, 4 * video_frames, N_MELS)
  np.testing.assert_allclose(np.asarray(jitted), np.asarray(mel.log_mel(audio)), atol=1e-6)


def test_frame_is_centred_on_its_hop():
  # A click at the centre of hop k lands in the middle of frame k's window: frames k-1 and k+1
  # see it equally far off centre, so they get equal energy.
  k = 5
  audio = np.zeros((1, 16 * HOP), np.float32)
  audio[0, k * HOP + HOP // 2] = 1.0
  energy = np.asarray(mel.log_mel(audio)).sum(axis=-1)[0]
  assert np.argmax(energy) == k
  np.testing.assert_allclose(energy[k - 1], energy[k + 1], rtol=1e-5)


def test_tone_peaks_in_its_band_and_silence_is_the_floor():
  t = np.arange(SR) / SR
  tone = np.float32(0.5 * np.sin(2 * np.pi * 1000.0 * t))[None]
  centres = mel._mel_to_hz(np.linspace(mel._hz_to_mel(0.0), mel._hz_to_mel(8000.0), N_MELS + 2))[
    1:-1
  ]
  peak_band = np.argmax(np.asarray(mel.log_mel(tone))[0, 50])
  assert abs(centres[peak_band] - 1000.0) <= np.diff(centres)[peak_band]
  silence = np.asarray(mel.log_mel(np.zeros((1, SR), np.float32)))
  np.testing.assert_allclose(silence, -1.0, atol=1e-6)


def test_loud_speech_stays_in_roughly_unit_range():
  audio = speechy(SR, seed=4)
  got = np.asarray(mel.log_mel(audio[None] * (0.95 / np.abs(audio).max())))
  assert got.min() >= -1.0 and 0.5 < got.max() < 1.5


def test_filterbank_has_no_empty_band():
  bank = mel.mel_filterbank(SR, N_FFT, N_MELS, 0.0, 8000.0)
  assert bank.shape == (N_FFT // 2 + 1, N_MELS)
  assert (bank.max(axis=0) > 0).all()


def test_rejects_bad_settings():
  with pytest.raises(ValueError, match="fmax"):
    mel.log_mel(np.zeros((1, 1600), np.float32), fmax=9000.0)
  with pytest.raises(ValueError, match="hop_length"):
    mel.log_mel(np.zeros((1, 1600), np.float32), win_length=100, hop_length=160)
