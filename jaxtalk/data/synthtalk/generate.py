"""SynthTalk clips and splits: utterance + identity + motion -> a `Clip`, written as shards.

A clip is fully determined by three seeds and its speech source: the identity seed (who), the
utterance seed (what is said) and the clip seed (its acting: the emotions over time with their
intensities, head-motion amplitude and blink rate; the blinks, brows and head motion that follow;
and for text-to-speech the speaking rate and pitch). Splits draw their identity and utterance seeds
from disjoint ranges, so no face and no utterance of the held-out split is ever seen in training,
whatever `seed` each split was made with; text-to-speech clips of the held-out split also speak
sentences in voices that training never hears (`sentences`).

Speech sources: "syllables" (`speech`, a syllable synthesizer with its exact schedule) and "tts"
(`tts`, espeak-ng speaking real sentences, the mouth from its phonemes through `visemes`).
"""

import functools
import multiprocessing
from collections.abc import Iterator

import numpy as np

from jaxtalk.data import clips
from jaxtalk.data.frame_codecs import RAW
from jaxtalk.data.synthtalk import face, motion, sentences, visemes
from jaxtalk.data.synthtalk import speech as syllables
from jaxtalk.errors import UserError
from jaxtalk.timebase import FPS, SAMPLES_PER_FRAME

# Changes whenever what a frame shows for given parameters changes (readers trained on it go stale).
SYNTHTALK_VERSION = 3
SPLITS = ("train", "eval")
SPEECH_SOURCES = ("syllables", "tts")
# Each split owns [base, base + _SPLIT_SPAN) of identity and utterance seeds; within it,
# generation seed s owns [base + s * _SEED_SPAN, base + (s + 1) * _SEED_SPAN).
_SEED_SPAN = 10**6
_SPLIT_SPAN = _SEED_SPAN * _SEED_SPAN
_SPLIT_BASES = {split: i * _SPLIT_SPAN for i, split in enumerate(SPLITS)}
# Each identity speaks this many clips of a split (different utterances): lets identity probes and
# cross-clip reenactment pair clips of one person.
CLIPS_PER_IDENTITY = 2


def split_of_seeds(identity_seed: int, utterance_seed: int) -> str:
  """The split whose seed ranges hold both seeds, or "custom" when they are not one split's."""
  for split, base in _SPLIT_BASES.items():
    if base <= identity_seed < base + _SPLIT_SPAN and base <= utterance_seed < base + _SPLIT_SPAN:
      return split
  return "custom"


def num_frames_for(seconds: float) -> int:
  """Frames in a clip of `seconds` at 25 fps (at least one)."""
  return max(1, int(round(seconds * FPS)))


def _check_speech(speech: str) -> None:
  if speech not in SPEECH_SOURCES:
    raise UserError(f"unknown speech source {speech!r}; use one of {', '.join(SPEECH_SOURCES)}")


# Where the emotion changes, the two voices crossfade over this many samples (20 ms).
_CROSSFADE_SAMPLES = 320


def _splice(pieces: list[np.ndarray], starts: list[int]) -> np.ndarray:
  """Piece k from `starts[k]` to the next start (the pieces are whole-length alternatives),
  crossfaded at each boundary so the voice changes without a click."""
  out = pieces[0].copy()
  for piece, start in zip(pieces[1:], starts[1:]):
    ramp = np.clip(
      (np.arange(len(out)) - (start - _CROSSFADE_SAMPLES // 2)) / _CROSSFADE_SAMPLES, 0.0, 1.0
    )
    out = (1.0 - ramp) * out + ramp * piece
  return out.astype(pieces[0].dtype)


def _speak(
  speech: str, acting: motion.Acting, *, utterance_seed: int, seed: int, split: str, num_frames: int
) -> tuple[np.ndarray, np.ndarray, dict]:
  """(audio, mouth [T, 3], speech meta): the utterance in each segment's emotion and intensity,
  spliced where the emotion changes."""
  num_samples = num_frames * SAMPLES_PER_FRAME
  audios, mouths, speech_meta = [], [], {}
  for segment in acting.segments:
    if speech == "syllables":
      utterance = syllables.synthesize_utterance(
        utterance_seed, num_samples, segment.emotion, segment.intensity
      )
      audios.append(utterance.audio)
      mouths.append(motion.mouth_from_schedule(utterance.schedule, num_frames))
      continue
    spoken = sentences.synthesize_utterance(
      utterance_seed, num_samples, segment.emotion, split, seed, segment.intensity
    )
    audios.append(spoken.audio)
    mouths.append(visemes.mouth_from_phonemes(spoken.events, spoken.audio, num_frames))
    if not speech_meta:  # what is said and by whom; rate and pitch of the first emotion
      speech_meta = {
        "speech": {
          "source": "tts",
          "language": spoken.language,
          "voice": spoken.voice,
          "sentences": spoken.sentence_ids,
          "rate_wpm": spoken.rate_wpm,
          "pitch": spoken.pitch,
          "pitch_range": spoken.pitch_range,
        }
      }
  segment = motion.segment_of_frames(acting, num_frames)
  mouth = np.stack([mouths[k][i] for i, k in enumerate(segment)])
  starts = [s.start * SAMPLES_PER_FRAME for s in acting.segments]
  return _splice(audios, starts), mouth, speech_meta


def make_clip(
  seed: int,
  *,
  seconds: float,
  image_size: int,
  identity_seed: int,
  utterance_seed: int,
  emotion: str | None = None,
  speech: str = "syllables",
  acting: motion.Acting | None = None,
) -> clips.Clip:
  """One SynthTalk clip of `round(seconds * 25)` frames at `image_size`^2 and 16 kHz audio.

  `speech` is the source of its audio and mouth, one of `SPEECH_SOURCES`. The clip's acting
  (emotions over time, pose amplitude, blink rate) is drawn from `seed`, starting in `emotion`
  when given, unless `acting` gives it whole.
  """
  _check_speech(speech)
  rng = np.random.default_rng([seed, 0x5EED])
  num_frames = num_frames_for(seconds)
  if acting is None:
    if emotion is None:
      emotion = syllables.EMOTIONS[int(rng.integers(len(syllables.EMOTIONS)))]
    if emotion not in syllables.EMOTIONS:
      raise UserError(f"unknown emotion {emotion!r}; use one of {', '.join(syllables.EMOTIONS)}")
    acting = motion.sample_acting(rng, num_frames, emotion)
  split = split_of_seeds(identity_seed, utterance_seed)
  audio, mouth, speech_meta = _speak(
    speech, acting, utterance_seed=utterance_seed, seed=seed, split=split, num_frames=num_frames
  )
  # Ids of their own: a syllable clip and a spoken clip of the same seeds are different clips.
  id_prefix = "synthtalk" if speech == "syllables" else "synthtalk-tts"
  meta = {
    "clip_id": f"{id_prefix}-{split}-{seed}",
    "identity_id": f"synthtalk-id-{identity_seed}",
    "utterance_id": f"{id_prefix}-utt-{utterance_seed}",
    "emotion": acting.segments[0].emotion,
    "acting": acting.to_meta(),
    "source": "synthtalk",
    "split": split,
    # With the speech source, enough to regenerate the clip or just its exact mouth ground truth.
    "seeds": {"clip": int(seed), "identity": int(identity_seed), "utterance": int(utterance_seed)},
    **speech_meta,
  }
  clip_motion = motion.with_random_motion(mouth, acting, rng)
  identity = face.sample_identity(np.random.default_rng([identity_seed, 0x1D]))
  return clips.Clip(
    frames=face.render_clip(identity, clip_motion, image_size),
    audio=audio,
    meta=meta,
    motion=clip_motion,
    identity=identity,
  )


def clip_seeds(split: str, seed: int, index: int) -> dict[str, int]:
  first = _SPLIT_BASES[split] + seed * _SEED_SPAN
  return {
    "seed": first + index,
    "identity_seed": first + index // CLIPS_PER_IDENTITY,
    "utterance_seed": first + index,
  }


def _make_indexed_clip(
  index: int, *, split: str, seed: int, seconds: float, image_size: int, speech: str
) -> clips.Clip:
  return make_clip(
    **clip_seeds(split, seed, index), seconds=seconds, image_size=image_size, speech=speech
  )


def generate_split(
  out_dir: str,
  split: str,
  num_clips: int,
  seconds: float,
  image_size: int,
  seed: int,
  *,
  workers: int = 2,
  speech: str = "syllables",
) -> list[str]:
  """Writes `num_clips` clips of `split` as ArrayRecord shards in out_dir; returns the shard paths.

  `speech` is the clips' speech source, one of `SPEECH_SOURCES`.

  The result depends only on the arguments, not on `workers` (processes that render clips in
  parallel; clips are written in index order).
  """
  if split not in SPLITS:
    raise UserError(f"unknown SynthTalk split {split!r}; use one of {', '.join(SPLITS)}")
  if not 1 <= num_clips <= _SEED_SPAN:
    raise UserError(f"number of clips must be between 1 and {_SEED_SPAN}, got {num_clips}")
  if not 0 <= seed < _SEED_SPAN:
    raise UserError(f"seed must be between 0 and {_SEED_SPAN - 1}, got {seed}")
  if seconds <= 0 or image_size < 8:
    raise UserError(
      f"clips need a positive length and an image size of at least 8, got {seconds} s, {image_size} px"
    )
  _check_speech(speech)
  make = functools.partial(
    _make_indexed_clip,
    split=split,
    seed=seed,
    seconds=seconds,
    image_size=image_size,
    speech=speech,
  )
  # Raw frames: SynthTalk's pixels are exact ground truth, which the reader learns from and the
  # evaluation's reconstruction scores compare against.
  if workers <= 1 or num_clips == 1:
    return clips.write_shards(map(make, range(num_clips)), out_dir, split, frame_codec=RAW)
  # "spawn": the caller may have JAX loaded, whose threads make fork unsafe.
  with multiprocessing.get_context("spawn").Pool(workers) as pool:
    clip_iterator: Iterator[clips.Clip] = pool.imap(make, range(num_clips), chunksize=4)
    return clips.write_shards(clip_iterator, out_dir, split, frame_codec=RAW)
