"""Real speech from espeak-ng, with the time of every phoneme it speaks.

espeak-ng comes from the `espeakng-loader` wheel, which bundles the library and its language data,
so no system package is needed. It is driven through its C API (`speak_lib.h`) with ctypes in
synchronous mode: `espeak_Synth` returns once the whole text is spoken, after the callback has been
handed every block of audio and the phoneme events, each carrying the phoneme's mnemonic and where
it starts in the audio, in milliseconds. Those positions are exact in the audio espeak generates,
but espeak places two kinds of event late: a stop's comes after its closure, which `speak` moves it
back over (`_with_closures`), and a vowel's after a nasal or liquid comes after the vowel's first
frames (some 20 ms), which stay the consonant's.

The library keeps global state from one message to the next that leaks into the waveform: the phase
of its pitch flutter advances every 64 samples and is never reset, so a sentence would come out a
few samples longer or shorter depending on what the process said before. Every `speak` therefore
loads a fresh copy of the library and unloads it afterwards (about a millisecond), under a lock:
the audio depends on the arguments alone, whatever ran before it in the process and in whichever
pool worker. The library's own noise generator (breath, aspiration) is reseeded for every call.
"""

import _ctypes
import ctypes
import dataclasses
import math
import os
import threading

import espeakng_loader
import numpy as np
import scipy.signal

from jaxtalk.timebase import SAMPLE_RATE

# espeak's speaking-rate limits (espeakRATE_MINIMUM / _MAXIMUM), in words per minute; pitch and
# pitch range are 0-100 with 50 the voice's own.
RATE_WPM_RANGE = (80, 450)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4
_EE_OK = 0
_NOISE_SEED = 1
# Shorter runs of zero samples are the waveform crossing zero, not a pause (5 ms at 22050 Hz).
_MIN_CLOSURE_SAMPLES = 110
# Marks that espeak puts in front of a stressed phoneme's mnemonic (primary, secondary stress).
_STRESS_MARKS = "',"


class _EventId(ctypes.Union):
  _fields_ = [
    ("number", ctypes.c_int),
    ("name", ctypes.c_char_p),
    # A phoneme's mnemonic, zero-terminated unless it fills all 8 bytes; bytes after the zero are
    # left over from earlier events.
    ("string", ctypes.c_ubyte * 8),
  ]


class _Event(ctypes.Structure):
  """`espeak_EVENT` of speak_lib.h, field for field; ctypes lays it out as the C compiler does."""

  _fields_ = [
    ("type", ctypes.c_int),
    ("unique_identifier", ctypes.c_uint),
    ("text_position", ctypes.c_int),
    ("length", ctypes.c_int),
    ("audio_position", ctypes.c_int),  # ms from the start of the message's audio
    ("sample", ctypes.c_int),
    ("user_data", ctypes.c_void_p),
    ("id", _EventId),
  ]


_SynthCallback = ctypes.CFUNCTYPE(
  ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)
# One message at a time per process: the library is one global instance while it is loaded.
_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class PhonemeEvent:
  """One phoneme as spoken: espeak's mnemonic (stress marks removed) and where it sounds.

  Pauses are phonemes too ("_", "_:"); consecutive events tile the audio without gaps.
  """

  phoneme: str
  start_s: float
  end_s: float


def _load() -> tuple[ctypes.CDLL, int]:
  """A freshly loaded, initialised library and its sample rate; `_unload` it when done."""
  lib = ctypes.CDLL(espeakng_loader.get_library_path())
  lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
  lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
  lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
  lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
  lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
  lib.espeak_Synth.argtypes = [
    ctypes.c_char_p,
    ctypes.c_size_t,
    ctypes.c_uint,
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_uint,
    ctypes.c_void_p,
    ctypes.c_void_p,
  ]
  # The folder that holds espeak-ng-data, as the API asks.
  data_parent = os.path.dirname(espeakng_loader.get_data_path())
  rate = lib.espeak_Initialize(
    _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent.encode(), _INITIALIZE_PHONEME_EVENTS
  )
  if rate <= 0:
    _unload(lib)
    raise RuntimeError(f"espeak-ng failed to initialise from {data_parent}")
  lib.espeak_ng_SetRandSeed(_NOISE_SEED)
  return lib, rate


def _unload(lib: ctypes.CDLL) -> None:
  lib.espeak_Terminate()
  _ctypes.dlclose(lib._handle)


def _check(status: int, what: str) -> None:
  if status != _EE_OK:
    raise RuntimeError(f"espeak-ng {what} failed with status {status}")


def _synthesize(
  lib: ctypes.CDLL, text: str, voice: str, rate_wpm: int, pitch: int, pitch_range: int
) -> tuple[np.ndarray, list[tuple[str, int]]]:
  """int16 audio at the library's rate and (mnemonic, start in ms) of each phoneme event."""
  blocks, phonemes = [], []

  def on_synth(wav, num_samples, events):
    if wav and num_samples > 0:
      blocks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
    i = 0
    while events[i].type != _EVENT_LIST_TERMINATED:
      event = events[i]
      if event.type == _EVENT_PHONEME:
        mnemonic = bytes(event.id.string).split(b"\0", 1)[0].decode("utf-8")
        # "(en)" and the like mark a switch of language for a foreign word, not a sound: the
        # phoneme before it goes on sounding.
        if not mnemonic.startswith("("):
          phonemes.append((mnemonic, event.audio_position))
      i += 1
    return 0  # continue synthesis

  callback = _SynthCallback(on_synth)  # referenced until synthesis is over: C holds a pointer
  lib.espeak_SetSynthCallback(callback)
  if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
    raise ValueError(f"espeak-ng has no voice {voice!r}")
  for parameter, value in (
    (_PARAM_RATE, rate_wpm),
    (_PARAM_PITCH, pitch),
    (_PARAM_RANGE, pitch_range),
  ):
    _check(lib.espeak_SetParameter(parameter, value, 0), "SetParameter")
  data = text.encode("utf-8") + b"\0"
  _check(lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None), "Synth")
  audio = np.concatenate(blocks) if blocks else np.zeros(0, np.int16)
  return audio, phonemes


def speak(
  text: str, voice: str, *, rate_wpm: int = 175, pitch: int = 50, pitch_range: int = 50
) -> tuple[np.ndarray, list[PhonemeEvent]]:
  """`text` spoken by espeak-ng's `voice` ("en", "de+f3", ...): float32 audio at 16 kHz and its phonemes.

  The events tile `[0, len(audio) / 16 kHz]`: each lasts until the next one starts, the last until
  the audio ends. A stop starts where its closure does (see `_with_closures`), to the sample; other
  events where espeak reports them, in whole milliseconds (rounded down). Deterministic in the
  arguments.
  """
  if not RATE_WPM_RANGE[0] <= rate_wpm <= RATE_WPM_RANGE[1]:
    raise ValueError(f"rate must be within {RATE_WPM_RANGE} words per minute, got {rate_wpm}")
  if not (0 <= pitch <= 100 and 0 <= pitch_range <= 100):
    raise ValueError(f"pitch and pitch range must be within 0-100, got {pitch}, {pitch_range}")
  with _LOCK:
    lib, native_rate = _load()
    try:
      pcm, phonemes = _synthesize(lib, text, voice, rate_wpm, pitch, pitch_range)
    finally:
      _unload(lib)
  starts = _with_closures(
    pcm, [ms * native_rate // 1000 for _, ms in phonemes], [mnemonic for mnemonic, _ in phonemes]
  )
  common = math.gcd(SAMPLE_RATE, native_rate)
  audio = scipy.signal.resample_poly(
    pcm.astype(np.float64) / 32768.0, SAMPLE_RATE // common, native_rate // common
  )
  duration = len(audio) / SAMPLE_RATE
  bounds = [min(n / native_rate, duration) for n in starts] + [duration]
  events = [
    PhonemeEvent(mnemonic.lstrip(_STRESS_MARKS), start, end)
    for (mnemonic, _), start, end in zip(phonemes, bounds[:-1], bounds[1:])
    if end > start  # espeak reports a zero-length pause at the end of a clause
  ]
  return audio.astype(np.float32), events


def _with_closures(pcm: np.ndarray, starts: list[int], mnemonics: list[str]) -> list[int]:
  """Event starts (samples) moved back over the silence espeak puts before a phoneme's event.

  espeak emits a phoneme's pre-pause, the closure of a stop (~40 ms before p, t, k), ahead of the
  phoneme's event, so that silence would count as the previous phoneme's: a mouth would stay open on
  the vowel through the closure. The pre-pause is digital silence (no variant in `sentences` has an
  echo to fill it), so the run of exact zeros before an event is exactly the closure. Only a
  sounding phoneme gives up its trailing silence: a pause keeps its own, and so does a silent
  phoneme (an unreleased stop before another).
  """
  moved = list(starts)
  for k in range(1, len(starts)):
    if mnemonics[k - 1].startswith("_"):
      continue
    sounding = np.flatnonzero(pcm[starts[k - 1] : starts[k]])
    if len(sounding) and starts[k] - (starts[k - 1] + sounding[-1] + 1) >= _MIN_CLOSURE_SAMPLES:
      moved[k] = starts[k - 1] + sounding[-1] + 1
  return moved
