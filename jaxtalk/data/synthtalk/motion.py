"""Per-frame facial motion: the mouth derived exactly from the audio schedule, the rest random.

Text-to-speech clips take their mouth from the phonemes instead (`visemes`) and draw the rest alike.

Motion is float32 `[T, 10]` in `MOTION_PARAMS` order:
  mouth_open   [0, 1]   lip gap, vowel openness x loudness envelope
  mouth_width  [0, 1]   0 rounded (o/u), `REST_WIDTH` at rest, 1 spread (i)
  jaw          [0, 1]   jaw drop
  blink        [0, 1]   1 = eyes shut
  brow         [-1, 1]  brow raise; negative lowers and knits them
  yaw, pitch, roll      head rotation in degrees
  tx, ty                head translation in normalised image units (2 = the image's width)
"""

import numpy as np
import scipy.ndimage

from jaxtalk.data.synthtalk import speech
from jaxtalk.timebase import FPS

MOTION_PARAMS = (
  "mouth_open",
  "mouth_width",
  "jaw",
  "blink",
  "brow",
  "yaw",
  "pitch",
  "roll",
  "tx",
  "ty",
)
POSE_PARAMS = MOTION_PARAMS[-5:]
REST_WIDTH = 0.5

# Per vowel in `speech.VOWELS` order (a, e, i, o, u): how far the lips part, how wide they
# stretch, how far the jaw drops. Open "a" drops the jaw most; "i"/"e" spread; "o"/"u" round.
VOWEL_OPENNESS = np.array([1.0, 0.65, 0.4, 0.75, 0.45])
VOWEL_WIDTH = np.array([0.6, 0.85, 1.0, 0.15, 0.0])
VOWEL_JAW = np.array([1.0, 0.55, 0.25, 0.7, 0.35])

# Brow offset per emotion, and how lively the head is.
_EMOTION_BROW = {"neutral": 0.0, "happy": 0.35, "sad": -0.25, "angry": -0.6}
_EMOTION_HEAD_GAIN = {"neutral": 1.0, "happy": 1.2, "sad": 0.7, "angry": 1.3}
# Large enough to be seen at 128 px: a few degrees of turn, a few pixels of sway.
_HEAD_STD_DEG = np.array([5.0, 3.0, 2.5])  # yaw, pitch, roll
HEAD_LIMIT_DEG = 14.0
_HEAD_SHIFT_STD = np.array([0.04, 0.025])  # tx, ty: 2.6 and 1.6 px at 128 px
HEAD_SHIFT_LIMIT = 0.12


def frame_times(num_frames: int) -> np.ndarray:
  """Centre time in seconds of each video frame; frame i covers [i/FPS, (i+1)/FPS)."""
  return (np.arange(num_frames) + 0.5) / FPS


def mouth_from_schedule(schedule: speech.SyllableSchedule, num_frames: int) -> np.ndarray:
  """Ground-truth `[T, 3]` (mouth_open, mouth_width, jaw) at each frame's centre time.

  Closures and pauses have no vowel sounding, so the mouth is shut there (open = jaw = 0, width at
  rest). The vowel's attack/release envelope gives the mouth its natural opening and closing.
  """
  if len(schedule.vowels) == 0:
    return np.tile(np.array([0.0, REST_WIDTH, 0.0], np.float32), (num_frames, 1))
  index, shape = speech.syllable_envelope(schedule, frame_times(num_frames))
  vowel = schedule.vowels[np.maximum(index, 0)]
  loudness = np.where(index >= 0, schedule.loudness[np.maximum(index, 0)], 0.0)
  # Loud vowels open wider, but a quiet one still visibly opens: the square root compresses loudness.
  amplitude = shape * np.sqrt(loudness)
  open_ = VOWEL_OPENNESS[vowel] * amplitude
  width = REST_WIDTH + shape * (VOWEL_WIDTH[vowel] - REST_WIDTH)
  jaw = VOWEL_JAW[vowel] * amplitude
  return np.stack([open_, width, jaw], axis=-1).astype(np.float32)


def _blinks(rng: np.random.Generator, num_frames: int) -> np.ndarray:
  """Blinks every 2-6 s lasting ~150 ms: lids close fast and reopen a little slower."""
  times = frame_times(num_frames)
  blink = np.zeros(num_frames)
  start = rng.uniform(0.3, 3.0)
  while start < num_frames / FPS:
    duration = rng.uniform(0.12, 0.18)
    phase = (times - start) / duration
    closing = np.clip(phase / 0.4, 0.0, 1.0)
    opening = np.clip((1.0 - phase) / 0.6, 0.0, 1.0)
    blink = np.maximum(
      blink, np.where((phase > 0) & (phase < 1), np.minimum(closing, opening), 0.0)
    )
    start += rng.uniform(2.0, 6.0)
  # A blink shorter than a frame would otherwise be missed entirely by frame-centre sampling.
  return np.clip(blink * 1.5, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, num_frames: int, sigma_frames: float) -> np.ndarray:
  """Gaussian-filtered white noise with unit standard deviation (in expectation, not per clip)."""
  pad = int(4 * sigma_frames)
  noise = scipy.ndimage.gaussian_filter1d(rng.standard_normal(num_frames + 2 * pad), sigma_frames)
  # Filtering white noise with a unit-area Gaussian scales its variance by 1 / (2 sqrt(pi) sigma).
  return noise[pad : pad + num_frames] * np.sqrt(2.0 * np.sqrt(np.pi) * sigma_frames)


def sample_motion(
  schedule: speech.SyllableSchedule, num_frames: int, emotion: str, rng: np.random.Generator
) -> np.ndarray:
  """Full `[T, 10]` motion: mouth from the schedule; blink, brow and head from `rng`."""
  return with_random_motion(mouth_from_schedule(schedule, num_frames), emotion, rng)


def with_random_motion(mouth: np.ndarray, emotion: str, rng: np.random.Generator) -> np.ndarray:
  """Full `[T, 10]` motion from a given `[T, 3]` mouth; blink, brow and head from `rng`."""
  num_frames = len(mouth)
  blink = _blinks(rng, num_frames)
  brow = _EMOTION_BROW[emotion] + 0.12 * _smooth_noise(rng, num_frames, sigma_frames=0.4 * FPS)
  head = np.stack(
    [_smooth_noise(rng, num_frames, sigma_frames=0.5 * FPS) for _ in range(3)], axis=-1
  )
  head = np.clip(
    head * _HEAD_STD_DEG * _EMOTION_HEAD_GAIN[emotion], -HEAD_LIMIT_DEG, HEAD_LIMIT_DEG
  )
  # The body sways more slowly than the head turns.
  shift = np.stack(
    [_smooth_noise(rng, num_frames, sigma_frames=1.0 * FPS) for _ in range(2)], axis=-1
  )
  shift = np.clip(shift * _HEAD_SHIFT_STD, -HEAD_SHIFT_LIMIT, HEAD_SHIFT_LIMIT)
  motion = np.concatenate(
    [mouth, blink[:, None], np.clip(brow, -1.0, 1.0)[:, None], head, shift], axis=-1
  )
  return motion.astype(np.float32)
