"""Frame and signal metrics: PSNR of uint8 frames, and how well one time series tracks another.

All numpy, applied to what the models produced, so they are the same whatever made the frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxtalk.timebase import FPS

# The offset search covers +-10 frames (+-400 ms at 25 fps): far beyond any perceptible lag,
# and short enough that a 4 s clip still overlaps itself by most of its length at every lag.
MAX_OFFSET_FRAMES = 10
# A blink is the lids passing half closed (SynthTalk's blink is 0 open .. 1 shut).
BLINK_CLOSED = 0.5


def psnr(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
  """Per-frame PSNR in dB of uint8 frames [T, H, W, C] against reference frames of the same shape.

  A frame identical to its reference would score infinity; its error is floored at what a single
  channel value off by one would give, the smallest error a uint8 frame can otherwise have.
  """
  error = frames.astype(np.float64) - reference.astype(np.float64)
  mse = np.mean(error**2, axis=tuple(range(1, error.ndim)))
  floor = 1.0 / np.prod(frames.shape[1:])
  return 10.0 * np.log10(255.0**2 / np.maximum(mse, floor))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
  """Pearson correlation; 0 when either series is constant (no linear relation can be seen)."""
  a, b = a - a.mean(), b - b.mean()
  scale = np.sqrt(np.sum(a * a) * np.sum(b * b))
  return float(np.sum(a * b) / scale) if scale > 0 else 0.0


def _zscore(x: np.ndarray) -> np.ndarray:
  std = x.std()
  return (x - x.mean()) / std if std > 0 else np.zeros_like(x, dtype=np.float64)


def offset_curve(
  predicted: Sequence[np.ndarray], target: Sequence[np.ndarray], max_offset: int = MAX_OFFSET_FRAMES
) -> tuple[np.ndarray, np.ndarray]:
  """(lags, correlation per lag) between predicted and target series, summed over clips.

  Each clip's series are z-normalised, so every clip weighs the same whatever its loudness. At lag
  L the correlation pairs predicted[t] with target[t - L], averaged over the frames where both
  exist (a mean, not a sum, so that small lags are not favoured for overlapping more frames).
  """
  lags = np.arange(-max_offset, max_offset + 1)
  curve = np.zeros(len(lags))
  for pred, true in zip(predicted, target, strict=True):
    pred, true = _zscore(pred), _zscore(true)
    for i, lag in enumerate(lags):
      pairs = pred[lag:] * true[: len(true) - lag] if lag >= 0 else pred[:lag] * true[-lag:]
      curve[i] += pairs.mean() if len(pairs) else 0.0
  return lags, curve


def sync_offset(
  predicted: Sequence[np.ndarray], target: Sequence[np.ndarray], max_offset: int = MAX_OFFSET_FRAMES
) -> int:
  """The lag in frames that best aligns predicted with target; positive = the video is late.

  A video whose mouth moves 3 frames after the sound that drives it (predicted[t] follows
  target[t - 3]) has offset +3. Ties, e.g. a flat curve from a motionless video, go to the lag
  nearest 0, so a video with no measurable sync does not report a spurious offset.
  """
  lags, curve = offset_curve(predicted, target, max_offset)
  best = max(range(len(lags)), key=lambda i: (curve[i], -abs(lags[i])))
  return int(lags[best])


def lip_sync_scores(predicted: Sequence[np.ndarray], target: Sequence[np.ndarray]) -> dict:
  """Mouth-opening error, correlation and offset of predicted vs ground-truth series, one per clip.

  mae: mean absolute error over all frames; pearson: the mean over clips of each clip's
  correlation (within-clip tracking, not the between-clip differences in level);
  offset_frames: `sync_offset`.
  """
  errors = np.concatenate([np.abs(p - t) for p, t in zip(predicted, target, strict=True)])
  return {
    "mae": float(errors.mean()),
    "pearson": float(np.mean([pearson(p, t) for p, t in zip(predicted, target)])),
    "offset_frames": sync_offset(predicted, target),
  }


def blinks_per_minute(blink: np.ndarray) -> float:
  """Times the lids close (cross BLINK_CLOSED going down) per minute of video."""
  closed = blink >= BLINK_CLOSED
  onsets = int(np.sum(closed[1:] & ~closed[:-1]) + closed[0])
  return 60.0 * onsets * FPS / len(blink)


def std_ratio(read: list[np.ndarray], truth: list[np.ndarray]) -> float:
  """Mean over clips of std(read) / std(truth): 1 is the ground truth's amplitude, 0 is still."""
  ratios = [np.std(r) / np.std(t) for r, t in zip(read, truth, strict=True) if np.std(t) > 0]
  return float(np.mean(ratios)) if ratios else float("nan")
