"""Mouth ground truth from the phonemes of text-to-speech: a viseme per phoneme, smoothly joined.

Every phoneme espeak-ng speaks (`tts.PhonemeEvent`) has a mouth target in the first three motion
parameters (`motion.MOTION_PARAMS`: mouth_open, mouth_width, jaw). The mouth is those targets as a
step function of time, smoothed over `RAMP_S` (each change of target is a ramp centred on the
phoneme boundary, so a frame more than half a ramp inside a phoneme shows exactly its target), with
one exception that lip-readers rely on: the lips seal for the whole of every p, b and m, however
short, closing and reopening over `CLOSURE_RAMP_S` outside it. Louder frames open a little wider.

Targets are looked up per character of espeak's ASCII mnemonic, skipping those without a viseme
(the modifiers ":" long, "~" nasal, "-", "#", "/", "^", digits other than the vowels "0" and "3"):
"aI" is a then I, "tS" is t then S, and a phoneme with several characters gives each its equal
share of the phoneme's time. A mnemonic without a known character falls back by class: "_..." is a
pause (mouth at rest), anything else a neutral consonant.
"""

import numpy as np

from jaxtalk.data.synthtalk import motion, tts
from jaxtalk.timebase import SAMPLES_PER_FRAME

REST = (0.0, motion.REST_WIDTH, 0.0)
_W = motion.REST_WIDTH  # short, for the table

# (mouth_open, mouth_width, jaw) per base character. Vowels open by their height and spread or
# round by their frontness and rounding; consonants are near closed, shaped by where the lips are.
VISEMES = {
  # open vowels
  "a": (1.0, 0.6, 1.0),
  "A": (0.95, _W, 0.95),
  "&": (0.9, 0.7, 0.85),
  "V": (0.75, _W, 0.7),
  "0": (0.8, 0.3, 0.8),
  # spread front vowels
  "E": (0.7, 0.8, 0.6),
  "e": (0.55, 0.85, 0.45),
  "I": (0.4, 0.9, 0.3),
  "i": (0.3, 1.0, 0.2),
  # rounded front vowels (German u-umlaut and o-umlaut, French u and eu)
  "y": (0.3, 0.05, 0.2),
  "Y": (0.45, 0.15, 0.35),
  "W": (0.6, 0.2, 0.5),
  # rounded back vowels
  "O": (0.75, 0.25, 0.7),
  "o": (0.55, 0.1, 0.5),
  "U": (0.4, 0.1, 0.3),
  "u": (0.3, 0.0, 0.2),
  # central vowels
  "@": (0.4, _W, 0.35),
  "3": (0.45, 0.45, 0.4),
  # bilabials: closed (and sealed for their whole duration, see `SEALED`)
  "p": (0.0, _W, 0.1),
  "b": (0.0, _W, 0.1),
  "m": (0.0, _W, 0.1),
  # lower lip to the teeth, or lips almost touching (Spanish b between vowels)
  "f": (0.08, 0.45, 0.15),
  "v": (0.08, 0.45, 0.15),
  "B": (0.08, 0.45, 0.15),
  # rounded and protruded
  "w": (0.15, 0.0, 0.15),
  "S": (0.2, 0.25, 0.15),
  "Z": (0.2, 0.25, 0.15),
  # tongue between the teeth
  "T": (0.25, 0.55, 0.2),
  "D": (0.25, 0.55, 0.2),
  # tongue tip behind the teeth: lips a little apart
  "t": (0.15, 0.6, 0.15),
  "d": (0.15, 0.6, 0.15),
  "s": (0.15, 0.6, 0.15),
  "z": (0.15, 0.6, 0.15),
  "n": (0.15, 0.6, 0.15),
  "l": (0.15, 0.6, 0.15),
  "L": (0.15, 0.6, 0.15),
  "r": (0.25, 0.35, 0.2),
  "*": (0.25, _W, 0.2),
  # palatal: spread like i
  "j": (0.2, 0.8, 0.15),
  ";": (0.2, 0.8, 0.15),
  "J": (0.2, 0.7, 0.2),
  "C": (0.2, 0.75, 0.15),
  # back of the tongue: jaw a little down
  "k": (0.25, _W, 0.3),
  "g": (0.25, _W, 0.3),
  "N": (0.25, _W, 0.3),
  "x": (0.25, _W, 0.3),
  "X": (0.25, _W, 0.3),
  "Q": (0.25, _W, 0.3),
  "R": (0.3, _W, 0.3),
  "h": (0.35, _W, 0.35),
}
SEALED = frozenset("pbm")
NEUTRAL_CONSONANT = (0.2, _W, 0.2)

# Coarticulation: the mouth moves from one target to the next over this long, centred on the
# phoneme boundary (a 50 ms ramp spans more than one 40 ms video frame, so nothing snaps).
RAMP_S = 0.05
# Lips close before a bilabial and open after it over this long.
CLOSURE_RAMP_S = 0.04
# Share of the opening (and jaw drop) that follows loudness: the square root of the frame's RMS
# relative to the loudest frame, as the syllable mouth compresses loudness.
LOUDNESS_SHARE = 0.3


def viseme_parts(phoneme: str) -> list[str]:
  """The base characters of a mnemonic that have a viseme, in order (may be empty)."""
  return [c for c in phoneme if c in VISEMES]


def _smoothstep(x: np.ndarray) -> np.ndarray:
  x = np.clip(x, 0.0, 1.0)
  return x * x * (3.0 - 2.0 * x)


def _segments(
  events: list[tts.PhonemeEvent],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(starts, ends, targets [K, 3], sealed [K]) of every viseme part, pauses included."""
  starts, ends, targets, sealed = [], [], [], []
  for event in events:
    parts = viseme_parts(event.phoneme)
    if parts:
      shapes = [VISEMES[c] for c in parts]
    else:
      shapes = [REST if event.phoneme.startswith("_") else NEUTRAL_CONSONANT]
    edges = np.linspace(event.start_s, event.end_s, len(shapes) + 1)
    for k, shape in enumerate(shapes):
      starts.append(edges[k])
      ends.append(edges[k + 1])
      targets.append(shape)
      sealed.append(bool(parts) and parts[k] in SEALED)
  return (
    np.array(starts, np.float64),
    np.array(ends, np.float64),
    np.array(targets, np.float64).reshape(-1, 3),
    np.array(sealed, bool),
  )


def mouth_from_phonemes(
  events: list[tts.PhonemeEvent], audio: np.ndarray, num_frames: int
) -> np.ndarray:
  """Ground-truth `[T, 3]` (mouth_open, mouth_width, jaw) at each frame's centre time.

  `events` in time order, not overlapping; outside them (silence between sentences) the mouth is
  at rest. `audio` is the 16 kHz speech of at least `num_frames` frames, for the loudness.
  """
  times = motion.frame_times(num_frames)[:, None]
  starts, ends, targets, sealed = _segments(events)
  # A step function smoothed by a kernel whose integral is the smoothstep: each segment's weight
  # rises over the ramp around its start and falls over the ramp around its end; outside all
  # segments the remaining weight holds the mouth at rest.
  rise = lambda edge: _smoothstep((times - edge) / RAMP_S + 0.5)
  weights = rise(starts) - rise(ends)  # [T, K]
  mouth = weights @ targets + (1.0 - weights.sum(axis=1, keepdims=True)) * np.array(REST)

  closing = _smoothstep((times - (starts - CLOSURE_RAMP_S)) / CLOSURE_RAMP_S)
  opening = _smoothstep(((ends + CLOSURE_RAMP_S) - times) / CLOSURE_RAMP_S)
  seal = np.max(np.where(sealed, np.minimum(closing, opening), 0.0), axis=1, initial=0.0)

  frames = audio[: num_frames * SAMPLES_PER_FRAME].reshape(num_frames, SAMPLES_PER_FRAME)
  rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
  relative = rms / rms.max() if rms.max() > 0 else rms
  loudness = 1.0 - LOUDNESS_SHARE + LOUDNESS_SHARE * np.sqrt(relative)
  mouth[:, 0] *= loudness * (1.0 - seal)
  mouth[:, 2] *= loudness
  return mouth.astype(np.float32)
