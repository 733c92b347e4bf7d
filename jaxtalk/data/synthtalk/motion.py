"""Per-frame facial motion: the mouth derived exactly from the audio schedule, the rest acted.

Text-to-speech clips take their mouth from the phonemes instead (`visemes`) and draw the rest alike.
The rest follows the clip's `Acting`: its emotions over time (each with an intensity) set the
brows, the mouth corners, how far the lids hang, how often the eyes blink and how lively and fast
the head moves; the clip's pose amplitude and blink rate scale those.

Motion is float32 `[T, 11]` in `MOTION_PARAMS` order:
  mouth_open   [0, 1]   lip gap, vowel openness x loudness envelope
  mouth_width  [0, 1]   0 rounded (o/u), `REST_WIDTH` at rest, 1 spread (i)
  jaw          [0, 1]   jaw drop
  blink        [0, 1]   lid closure, 1 = eyes shut: the emotion's lowered lids, and blinks
  brow         [-1, 1]  brow raise; negative lowers and knits them
  smile        [-1, 1]  mouth corners: raised > 0, turned down < 0
  yaw, pitch, roll      head rotation in degrees
  tx, ty                head translation in normalised image units (2 = the image's width)
"""

import dataclasses

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
  "smile",
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

# Large enough to be seen at 128 px: a few degrees of turn, a few pixels of sway. The limits leave
# room for twice the liveliest emotion's amplitude.
_HEAD_STD_DEG = np.array([5.0, 3.0, 2.5])  # yaw, pitch, roll
HEAD_LIMIT_DEG = 24.0
_HEAD_SHIFT_STD = np.array([0.04, 0.025])  # tx, ty: 2.6 and 1.6 px at 128 px
HEAD_SHIFT_LIMIT = 0.16
# Each clip holds its head around a pose of its own, so a still head (pose amplitude 0) is one
# that keeps whatever pose it has, not one that faces the camera.
_REST_POSE_STD = np.array([3.0, 2.0, 2.0, 0.015, 0.01])  # yaw, pitch, roll (deg), tx, ty
# How long the face takes to change from one emotion to the next.
_TRANSITION_FRAMES = 10
# Blinks a minute at rest (a neutral face), when a clip does not draw its own rate.
DEFAULT_BLINK_RATE = 15.0


@dataclasses.dataclass(frozen=True)
class EmotionFace:
  """What an emotion does to the face at full intensity; intensity scales it from neutral."""

  brow: float  # brow raise, as the motion parameter
  smile: float  # mouth corners: up > 0, down < 0
  lids: float  # lids lowered at rest (0 open .. 1 shut), under any blink
  blink_factor: float  # times the clip's blink rate
  head_gain: float  # times the clip's head-motion amplitude
  head_tempo: float  # times the head's speed (its motion's time scale divided)


EMOTION_FACES = {
  "neutral": EmotionFace(0.0, 0.0, 0.0, 1.0, 1.0, 1.0),
  "happy": EmotionFace(0.35, 0.8, 0.12, 1.2, 1.25, 1.35),
  "sad": EmotionFace(-0.3, -0.6, 0.35, 0.7, 0.6, 0.6),
  "angry": EmotionFace(-0.7, -0.35, 0.25, 0.6, 1.4, 1.25),
}
_FACE_FIELDS = tuple(f.name for f in dataclasses.fields(EmotionFace))


@dataclasses.dataclass(frozen=True)
class EmotionSegment:
  start: int  # first frame
  emotion: str  # one of EMOTIONS
  intensity: float  # 0 (neutral) .. 1 (the emotion's full face)


@dataclasses.dataclass(frozen=True)
class Acting:
  """How a clip is acted: its emotions over time, head-motion amplitude and blink rate."""

  segments: tuple[EmotionSegment, ...]  # in time order, the first starting at frame 0
  pose_amplitude: float = 1.0  # times each emotion's head motion; 0 holds the head still
  blink_rate: float = DEFAULT_BLINK_RATE  # blinks a minute at neutral; emotions scale it

  @classmethod
  def constant(cls, emotion: str, intensity: float = 1.0, **kwargs) -> "Acting":
    return cls((EmotionSegment(0, emotion, intensity),), **kwargs)

  def face(self, segment: EmotionSegment) -> EmotionFace:
    """The segment's emotion at its intensity: each field interpolated from neutral."""
    neutral, full = EMOTION_FACES["neutral"], EMOTION_FACES[segment.emotion]
    return EmotionFace(
      *(
        getattr(neutral, f) + segment.intensity * (getattr(full, f) - getattr(neutral, f))
        for f in _FACE_FIELDS
      )
    )

  def segment_blink_rate(self, segment: EmotionSegment) -> float:
    return self.blink_rate * self.face(segment).blink_factor

  def to_meta(self) -> dict:
    """JSON for a clip's meta["acting"], what `jaxtalk.data.acting` reads: per segment the
    emotion, its intensity and the blink rate it has (blinks a minute), and the pose amplitude."""
    return {
      "segments": [
        {
          "start": s.start,
          "emotion": s.emotion,
          "intensity": round(float(s.intensity), 4),
          "blink_rate": round(float(self.segment_blink_rate(s)), 4),
        }
        for s in self.segments
      ],
      "pose_amplitude": round(float(self.pose_amplitude), 4),
    }


def sample_acting(rng: np.random.Generator, num_frames: int, emotion: str) -> Acting:
  """A random acting that starts in `emotion`: half the clips change to another emotion somewhere
  in their middle; one in ten never blinks and one in seven holds its head still."""
  first = EmotionSegment(0, emotion, 1.0 if emotion == "neutral" else rng.uniform(0.3, 1.0))
  segments = [first]
  if rng.uniform() < 0.5 and num_frames >= 4:
    others = [e for e in speech.EMOTIONS if e != emotion]
    second = others[int(rng.integers(len(others)))]
    start = int(rng.integers(int(0.3 * num_frames), int(0.7 * num_frames) + 1))
    intensity = 1.0 if second == "neutral" else rng.uniform(0.3, 1.0)
    segments.append(EmotionSegment(max(start, 1), second, intensity))
  blink_rate = 0.0 if rng.uniform() < 0.1 else float(np.exp(rng.uniform(np.log(6), np.log(36))))
  pose_amplitude = 0.0 if rng.uniform() < 0.15 else rng.uniform(0.25, 2.25)
  return Acting(tuple(segments), float(pose_amplitude), blink_rate)


def segment_of_frames(acting: Acting, num_frames: int) -> np.ndarray:
  """int [T]: the index of the segment each frame belongs to."""
  starts = np.array([s.start for s in acting.segments])
  return np.searchsorted(starts, np.arange(num_frames), side="right") - 1


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


def _blinks(rng: np.random.Generator, rate_per_minute: np.ndarray) -> np.ndarray:
  """Blinks at each frame's rate (a minute's worth, spread 0.5-1.5x the mean interval) lasting
  ~150 ms: lids close fast and reopen a little slower. A rate of 0 never blinks."""
  num_frames = len(rate_per_minute)
  times = frame_times(num_frames)
  blink = np.zeros(num_frames)
  start = rng.uniform(0.1, 1.0) * 60.0 / max(float(rate_per_minute[0]), 6.0)
  while start < num_frames / FPS:
    rate = float(rate_per_minute[min(int(start * FPS), num_frames - 1)])
    if rate <= 0:
      start += 0.5
      continue
    duration = rng.uniform(0.12, 0.18)
    phase = (times - start) / duration
    closing = np.clip(phase / 0.4, 0.0, 1.0)
    opening = np.clip((1.0 - phase) / 0.6, 0.0, 1.0)
    blink = np.maximum(
      blink, np.where((phase > 0) & (phase < 1), np.minimum(closing, opening), 0.0)
    )
    start += rng.uniform(0.5, 1.5) * 60.0 / rate
  # A blink shorter than a frame would otherwise be missed entirely by frame-centre sampling.
  return np.clip(blink * 1.5, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, num_frames: int, sigma_frames: float) -> np.ndarray:
  """Gaussian-filtered white noise with unit standard deviation (in expectation, not per clip)."""
  pad = int(4 * sigma_frames)
  noise = scipy.ndimage.gaussian_filter1d(rng.standard_normal(num_frames + 2 * pad), sigma_frames)
  # Filtering white noise with a unit-area Gaussian scales its variance by 1 / (2 sqrt(pi) sigma).
  return noise[pad : pad + num_frames] * np.sqrt(2.0 * np.sqrt(np.pi) * sigma_frames)


def _transition(values: np.ndarray) -> np.ndarray:
  """Per-frame values [T, ...] that jump between segments, ramped over `_TRANSITION_FRAMES`."""
  return scipy.ndimage.uniform_filter1d(values, _TRANSITION_FRAMES, axis=0, mode="nearest")


def sample_motion(
  schedule: speech.SyllableSchedule, num_frames: int, acting: Acting, rng: np.random.Generator
) -> np.ndarray:
  """Full `[T, 11]` motion: mouth from the schedule; the rest acted, drawn from `rng`."""
  return with_random_motion(mouth_from_schedule(schedule, num_frames), acting, rng)


def with_random_motion(mouth: np.ndarray, acting: Acting, rng: np.random.Generator) -> np.ndarray:
  """Full `[T, 11]` motion from a given `[T, 3]` mouth; the rest acted, drawn from `rng`."""
  num_frames = len(mouth)
  segment = segment_of_frames(acting, num_frames)
  faces = [acting.face(s) for s in acting.segments]
  face = _transition(
    np.array([[getattr(faces[k], f) for f in _FACE_FIELDS] for k in segment], np.float64)
  )
  face = dict(zip(_FACE_FIELDS, face.T))
  # The rate jumps where the emotion does: a blink is an event, not a level to ramp.
  blink_rate = np.array([acting.segment_blink_rate(acting.segments[k]) for k in segment])
  blink = 1.0 - (1.0 - face["lids"]) * (1.0 - _blinks(rng, blink_rate))
  brow = face["brow"] + 0.12 * _smooth_noise(rng, num_frames, sigma_frames=0.4 * FPS)
  smile = face["smile"] + 0.08 * _smooth_noise(rng, num_frames, sigma_frames=0.6 * FPS)
  # Each emotion's head moves at its own tempo: one noise per segment, crossfaded between them.
  weights = _transition(np.eye(len(faces))[segment])
  head = sum(
    weights[:, k : k + 1]
    * np.stack(
      [
        _smooth_noise(rng, num_frames, sigma_frames=0.5 * FPS / faces[k].head_tempo)
        for _ in range(3)
      ],
      axis=-1,
    )
    for k in range(len(faces))
  )
  gain = acting.pose_amplitude * face["head_gain"][:, None]
  rest = rng.standard_normal(5) * _REST_POSE_STD
  head = np.clip(rest[:3] + head * _HEAD_STD_DEG * gain, -HEAD_LIMIT_DEG, HEAD_LIMIT_DEG)
  # The body sways more slowly than the head turns.
  shift = np.stack(
    [_smooth_noise(rng, num_frames, sigma_frames=1.0 * FPS) for _ in range(2)], axis=-1
  )
  shift = np.clip(rest[3:] + shift * _HEAD_SHIFT_STD * gain, -HEAD_SHIFT_LIMIT, HEAD_SHIFT_LIMIT)
  motion = np.concatenate(
    [
      mouth,
      blink[:, None],
      np.clip(brow, -1.0, 1.0)[:, None],
      np.clip(smile, -1.0, 1.0)[:, None],
      head,
      shift,
    ],
    axis=-1,
  )
  return motion.astype(np.float32)
