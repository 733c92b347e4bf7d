"""Speech-like audio built from a syllable schedule whose timing is known exactly.

An utterance is phrases of words of syllables. Each syllable is a consonant closure (silence with a
plosive burst, or fricative noise) followed by a vowel: a sawtooth glottal source at the pitch
contour, shaped by a cascade of three formant resonators. Phrases and words are separated by
pauses. The emotion label sets pitch mean and range, loudness and speaking rate.

The vowel amplitude is `syllable_envelope(schedule, t)`, the same function the mouth is derived
from, so lip-sync ground truth is exact rather than estimated from the waveform.
"""

import dataclasses

import numpy as np
import scipy.signal

from jaxtalk.timebase import SAMPLE_RATE

VOWELS = ("a", "e", "i", "o", "u")
EMOTIONS = ("neutral", "happy", "sad", "angry")

# Peak of the normalised waveform: leaves headroom for resampling and codecs.
PEAK = 0.8

# Formant frequencies (F1, F2, F3) in Hz of an adult speaker, per vowel in `VOWELS` order.
_FORMANTS_HZ = np.array(
  [
    (730.0, 1090.0, 2440.0),
    (530.0, 1840.0, 2480.0),
    (270.0, 2290.0, 3010.0),
    (570.0, 840.0, 2410.0),
    (300.0, 870.0, 2240.0),
  ]
)
_FORMANT_BANDWIDTHS_HZ = (90.0, 110.0, 170.0)

# Vowel amplitude ramps. Short enough to leave a plateau in a 100 ms vowel, long enough that the
# mouth (which follows the same envelope) does not snap open between two video frames.
ATTACK_S = 0.04
RELEASE_S = 0.06


@dataclasses.dataclass(frozen=True)
class EmotionStyle:
  pitch_hz: float  # mean f0
  pitch_range_st: float  # spread of syllable pitch targets, in semitones
  loudness: float  # mean syllable loudness in (0, 1]
  rate: float  # speaking-rate multiplier (durations are divided by it)


EMOTION_STYLES = {
  "neutral": EmotionStyle(pitch_hz=140.0, pitch_range_st=4.0, loudness=0.75, rate=1.0),
  "happy": EmotionStyle(pitch_hz=185.0, pitch_range_st=8.0, loudness=0.85, rate=1.1),
  "sad": EmotionStyle(pitch_hz=115.0, pitch_range_st=2.0, loudness=0.55, rate=0.8),
  "angry": EmotionStyle(pitch_hz=165.0, pitch_range_st=7.0, loudness=1.0, rate=1.2),
}


def emotion_style(emotion: str, intensity: float = 1.0) -> EmotionStyle:
  """The emotion's voice at `intensity` (0: neutral, 1: as in EMOTION_STYLES): pitch and rate
  move geometrically between neutral and the emotion, range and loudness linearly."""
  if emotion not in EMOTION_STYLES:
    raise ValueError(f"unknown emotion {emotion!r}; expected one of {EMOTIONS}")
  neutral, full = EMOTION_STYLES["neutral"], EMOTION_STYLES[emotion]
  geometric = lambda a, b: a * (b / a) ** intensity
  linear = lambda a, b: a + intensity * (b - a)
  return EmotionStyle(
    pitch_hz=geometric(neutral.pitch_hz, full.pitch_hz),
    pitch_range_st=linear(neutral.pitch_range_st, full.pitch_range_st),
    loudness=linear(neutral.loudness, full.loudness),
    rate=geometric(neutral.rate, full.rate),
  )


@dataclasses.dataclass(frozen=True)
class SyllableSchedule:
  """The vowels of an utterance in time order; everything outside them is closure or pause.

  Vowels never overlap: `onsets[k] < offsets[k] <= onsets[k + 1]`.
  """

  onsets: np.ndarray  # [N] float64 seconds, vowel start
  offsets: np.ndarray  # [N] float64 seconds, vowel end
  vowels: np.ndarray  # [N] int32 index into VOWELS
  loudness: np.ndarray  # [N] float64 in (0, 1], the vowel's peak amplitude before normalisation


@dataclasses.dataclass(frozen=True)
class Utterance:
  audio: np.ndarray  # [num_samples] float32, peak PEAK
  schedule: SyllableSchedule
  emotion: str


def _smoothstep(x: np.ndarray) -> np.ndarray:
  x = np.clip(x, 0.0, 1.0)
  return x * x * (3.0 - 2.0 * x)


def syllable_envelope(
  schedule: SyllableSchedule, times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """The vowel sounding at each time and its unit amplitude envelope.

  Returns `(index, shape)`: `index[j]` is the syllable whose vowel contains `times[j]` (-1 when none
  does) and `shape[j]` in [0, 1] its attack/release envelope there (0 when no vowel sounds).
  Multiply `shape` by `schedule.loudness[index]` for the vowel's amplitude.
  """
  times = np.asarray(times, np.float64)
  if len(schedule.onsets) == 0:
    return np.full(times.shape, -1), np.zeros(times.shape)
  index = np.searchsorted(schedule.onsets, times, side="right") - 1
  safe = np.maximum(index, 0)
  onset, offset = schedule.onsets[safe], schedule.offsets[safe]
  inside = (index >= 0) & (times < offset)
  shape = np.minimum(
    _smoothstep((times - onset) / ATTACK_S), _smoothstep((offset - times) / RELEASE_S)
  )
  return np.where(inside, index, -1), np.where(inside, shape, 0.0)


def _resonator_cascade(source: np.ndarray, vowel: int) -> np.ndarray:
  """Filters the glottal source through the vowel's three formants (Klatt-style cascade)."""
  out = source
  for freq, bandwidth in zip(_FORMANTS_HZ[vowel], _FORMANT_BANDWIDTHS_HZ):
    radius = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    a1 = -2.0 * radius * np.cos(2.0 * np.pi * freq / SAMPLE_RATE)
    a2 = radius * radius
    # Unit gain at DC keeps the three stages from compounding into huge values.
    out = scipy.signal.lfilter([1.0 + a1 + a2], [1.0, a1, a2], out)
  return out


@dataclasses.dataclass
class _Event:
  """One syllable as planned: its content (from the utterance seed) and its prosody."""

  vowel: int
  closure: str  # "stop", "fricative" or "none"
  closure_s: float
  vowel_s: float
  gap_after_s: float  # word gap or phrase pause after the vowel, 0 inside a word
  loudness: float
  pitch_z: float  # pitch target in units of the emotion's range, ~[-1, 1]


def _plan_events(
  utterance_seed: int, emotion: str, style: EmotionStyle, seconds: float
) -> tuple[float, list[_Event]]:
  """Draws phrases/words/syllables until they fill `seconds`; returns (lead-in silence, events).

  Content (vowels, word and phrase lengths, consonant kinds) comes from one random stream and
  prosody (durations, loudness, pitch) from another, so one utterance spoken with another emotion
  says the same syllables.
  """
  content = np.random.default_rng([utterance_seed, 0])
  prosody = np.random.default_rng([utterance_seed, 1, EMOTIONS.index(emotion)])
  lead_in = prosody.uniform(0.1, 0.35)
  t, events = lead_in, []
  while t < seconds:
    num_words = int(content.integers(2, 6))
    for w in range(num_words):
      num_syllables = int(content.integers(1, 4))
      for s in range(num_syllables):
        first_in_phrase = w == 0 and s == 0
        # Only a phrase may start on a bare vowel; inside one, a closure keeps vowels apart.
        closure = str(
          content.choice(
            ["stop", "fricative", "none"] if first_in_phrase else ["stop", "fricative"]
          )
        )
        if closure == "stop":
          closure_s = prosody.uniform(0.05, 0.09)
        elif closure == "fricative":
          closure_s = prosody.uniform(0.07, 0.12)
        else:
          closure_s = 0.0
        phrase_final = w == num_words - 1 and s == num_syllables - 1
        vowel_s = prosody.uniform(0.11, 0.2) * (1.4 if phrase_final else 1.0)
        if phrase_final:
          gap_after_s = prosody.uniform(0.3, 0.6)
        elif s == num_syllables - 1:
          gap_after_s = prosody.uniform(0.05, 0.14)
        else:
          gap_after_s = 0.0
        stress = 1.0 if s == 0 else 0.85
        declination = 1.0 - 0.25 * w / max(num_words - 1, 1)
        loudness = style.loudness * prosody.uniform(0.7, 1.0) * stress * declination
        pitch_z = (
          0.5 - w / max(num_words - 1, 1) + (0.6 if s == 0 else 0.0) * prosody.uniform(0.3, 1.0)
        )
        pitch_z += prosody.normal(0.0, 0.15)
        event = _Event(
          int(content.integers(len(VOWELS))),
          closure,
          closure_s / style.rate,
          vowel_s / style.rate,
          gap_after_s / style.rate,
          float(np.clip(loudness, 0.1, 1.0)),
          float(pitch_z),
        )
        events.append(event)
        t += event.closure_s + event.vowel_s + event.gap_after_s
  return lead_in, events


# Noise colours of the consonants: hiss for fricatives, a broader click for plosive releases.
_FRICATIVE_BAND = scipy.signal.butter(
  2, [2500.0, 6500.0], btype="bandpass", fs=SAMPLE_RATE, output="sos"
)
_BURST_BAND = scipy.signal.butter(
  2, [1000.0, 5000.0], btype="bandpass", fs=SAMPLE_RATE, output="sos"
)


def _band_noise(rng: np.random.Generator, n: int, band: np.ndarray) -> np.ndarray:
  """`n` samples of unit-RMS noise in a band; 64 extra samples let the filter settle first."""
  noise = scipy.signal.sosfilt(band, rng.standard_normal(n + 64))[64:]
  return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def synthesize_utterance(
  utterance_seed: int, num_samples: int, emotion: str = "neutral", intensity: float = 1.0
) -> Utterance:
  """Speech-like audio of exactly `num_samples` samples at `SAMPLE_RATE`, and its schedule.

  Deterministic in (utterance_seed, num_samples, emotion, intensity). Vowels that would run past
  the end are dropped so that every scheduled vowel is heard whole.
  """
  style = emotion_style(emotion, intensity)
  seconds = num_samples / SAMPLE_RATE
  lead_in, events = _plan_events(utterance_seed, emotion, style, seconds)
  noise_rng = np.random.default_rng([utterance_seed, 2, EMOTIONS.index(emotion)])

  audio = np.zeros(num_samples)
  onsets, offsets, vowels, loudness, pitch_t, pitch_hz = [], [], [], [], [], []
  t = lead_in
  for event in events:
    onset = t + event.closure_s
    offset = onset + event.vowel_s
    if offset > seconds:
      break
    start, stop = int(round(t * SAMPLE_RATE)), int(round(onset * SAMPLE_RATE))
    # Consonants stay well below the vowels: the mouth is closed for them, and the loudness a
    # listener (or a lip-sync metric) tracks is carried by the vowels.
    if event.closure == "fricative":
      burst = _band_noise(noise_rng, stop - start, _FRICATIVE_BAND)
      audio[start:stop] += 0.12 * event.loudness * burst * np.hanning(stop - start)
    elif event.closure == "stop":
      burst_len = min(int(0.012 * SAMPLE_RATE), stop - start)
      burst = _band_noise(noise_rng, burst_len, _BURST_BAND)
      audio[stop - burst_len : stop] += 0.25 * event.loudness * burst * np.hanning(burst_len)
    onsets.append(onset)
    offsets.append(offset)
    vowels.append(event.vowel)
    loudness.append(event.loudness)
    pitch_t.append(0.5 * (onset + offset))
    pitch_hz.append(style.pitch_hz * 2.0 ** (style.pitch_range_st / 12.0 * 0.5 * event.pitch_z))
    t = offset + event.gap_after_s

  schedule = SyllableSchedule(
    np.array(onsets, np.float64),
    np.array(offsets, np.float64),
    np.array(vowels, np.int32),
    np.array(loudness, np.float64),
  )
  times = np.arange(num_samples) / SAMPLE_RATE
  if onsets:
    # One continuous glottal phase over the whole utterance: pitch glides between syllable targets,
    # with a slow 5 Hz vibrato so sustained vowels do not sound synthetic-flat.
    f0 = np.interp(times, pitch_t, pitch_hz) * (1.0 + 0.01 * np.sin(2.0 * np.pi * 5.0 * times))
    phase = np.cumsum(f0 / SAMPLE_RATE)
    glottal = 2.0 * (phase - np.floor(phase)) - 1.0 + 0.05 * noise_rng.standard_normal(num_samples)
    # Radiation from the lips (+6 dB/octave) lifts the upper formants that tell the vowels apart.
    glottal = scipy.signal.lfilter([1.0, -0.97], [1.0], glottal)
    index, shape = syllable_envelope(schedule, times)
    for k in range(len(onsets)):
      start = int(np.floor(onsets[k] * SAMPLE_RATE))
      stop = min(int(np.ceil(offsets[k] * SAMPLE_RATE)) + 1, num_samples)
      voiced = _resonator_cascade(glottal[start:stop], int(vowels[k]))
      voiced /= np.sqrt(np.mean(voiced**2)) + 1e-12
      audio[start:stop] += (
        voiced * np.where(index[start:stop] == k, shape[start:stop], 0.0) * loudness[k]
      )

  peak = np.max(np.abs(audio))
  if peak > 0:
    audio *= PEAK / peak
  return Utterance(audio.astype(np.float32), schedule, emotion)
