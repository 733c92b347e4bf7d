"""SynthTalk's text-to-speech: espeak-ng's phoneme events, the mouth they give, splits and clips."""

import ctypes

import numpy as np
import pytest

from jaxtalk.data import clips
from jaxtalk.data.synthtalk import __main__ as synthtalk_main
from jaxtalk.data.synthtalk import generate, motion, sentences, tts, visemes
from jaxtalk.errors import UserError
from jaxtalk.timebase import SAMPLE_RATE, SAMPLES_PER_FRAME

# A vowel or pause is judged away from its edges, where the neighbours' sound and shape blend in.
_MARGIN_S = visemes.RAMP_S / 2


def _transcription(text: str, voice: str) -> list[str]:
  """espeak's own phoneme transcription of `text` (espeak_TextToPhonemes), pauses left out."""
  lib, _ = tts._load()
  try:
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_TextToPhonemes.argtypes = [
      ctypes.POINTER(ctypes.c_char_p),
      ctypes.c_int,
      ctypes.c_int,
    ]
    assert lib.espeak_SetVoiceByName(voice.encode()) == 0
    remaining = ctypes.c_char_p(text.encode())
    phonemes = []
    # One clause per call; bits 8-23 of the mode are the separator between phonemes.
    while remaining.value:
      phonemes += lib.espeak_TextToPhonemes(ctypes.byref(remaining), 1, ord(" ") << 8).split()
    return [p.decode().lstrip(tts._STRESS_MARKS) for p in phonemes if not p.startswith(b"_")]
  finally:
    tts._unload(lib)


def _is_subsequence(items: list[str], sequence: list[str]) -> bool:
  remaining = iter(sequence)
  return all(item in remaining for item in items)


def _rms(audio: np.ndarray, start_s: float, end_s: float) -> float:
  segment = audio[int(start_s * SAMPLE_RATE) : int(end_s * SAMPLE_RATE)]
  return float(np.sqrt(np.mean(segment.astype(np.float64) ** 2)))


def test_event_struct_has_the_layout_of_speak_lib_h():
  # espeak_EVENT on a 64-bit system: six 4-byte fields, then the 8-byte user_data and id.
  offsets = {name: getattr(tts._Event, name).offset for name, _ in tts._Event._fields_}
  assert offsets == {
    "type": 0,
    "unique_identifier": 4,
    "text_position": 8,
    "length": 12,
    "audio_position": 16,
    "sample": 20,
    "user_data": 24,
    "id": 32,
  }
  assert ctypes.sizeof(tts._Event) == 40 and ctypes.sizeof(tts._EventId) == 8


# A sentence with a comma per language: espeak pauses there.
_WITH_A_PAUSE = {"en": 11, "de": 8, "fr": 3, "es": 7, "it": 2}


@pytest.mark.parametrize("language", sorted(sentences.LANGUAGES))
def test_events_tile_the_audio_and_are_the_phonemes_espeak_transcribes(language):
  text = sentences.LANGUAGES[language].sentences[_WITH_A_PAUSE[language]]
  voice = f"{sentences.LANGUAGES[language].voices[0]}+m3"
  audio, events = tts.speak(text, voice)
  assert audio.dtype == np.float32 and 0.5 < len(audio) / SAMPLE_RATE < 5.0
  duration = len(audio) / SAMPLE_RATE
  starts = np.array([e.start_s for e in events])
  ends = np.array([e.end_s for e in events])
  assert 0.0 <= starts[0] < 0.05 and np.all(np.diff(starts) > 0)
  np.testing.assert_array_equal(ends[:-1], starts[1:])
  assert ends[-1] == duration
  # The mnemonics read from the event's union are espeak's transcription of the text, in order
  # (a geminate is transcribed long, "t:", and spoken as one event, "t").
  spoken = [e.phoneme for e in events if not e.phoneme.startswith("_")]
  assert spoken and all(spoken)
  transcribed = _transcription(text, voice)
  assert _is_subsequence([p.rstrip(":") for p in spoken], [p.rstrip(":") for p in transcribed])
  assert len(spoken) >= 0.9 * len(transcribed)
  # Vowels sound; the pause at the comma is silent.
  loudest = np.max(np.abs(audio))
  for event in events:
    if event.phoneme[0] in "aeiouAEIOU" and event.end_s - event.start_s > 2 * _MARGIN_S + 0.02:
      assert _rms(audio, event.start_s + _MARGIN_S, event.end_s - _MARGIN_S) > 0.02 * loudest
  pauses = [e for e in events if e.phoneme == "_:" and e.end_s - e.start_s > 2 * _MARGIN_S + 0.02]
  assert pauses
  for pause in pauses:
    assert _rms(audio, pause.start_s + _MARGIN_S, pause.end_s - _MARGIN_S) < 0.01 * loudest


def test_a_stop_starts_with_its_closure():
  """espeak reports p, t, k after their closure; `speak` moves them back to where silence starts."""
  audio, events = tts.speak("Papa, a top tip.", "en+m1")
  stops = [(k, e) for k, e in enumerate(events) if e.phoneme in ("p", "t") and k > 0]
  assert len(stops) >= 4
  after_vowels = [(k, stop) for k, stop in stops if events[k - 1].phoneme[0] in "aeiouAEIOU0@3V"]
  assert len(after_vowels) >= 3
  for k, stop in after_vowels:
    # The first 20 ms of the stop are silent and the vowel before it sounds to its end.
    assert _rms(audio, stop.start_s, stop.start_s + 0.02) < 1e-3
    assert _rms(audio, events[k - 1].end_s - 0.01, events[k - 1].end_s) > 1e-2


def test_speak_is_repeatable_and_checks_its_arguments():
  first = tts.speak("Hello there.", "en+f1", rate_wpm=200, pitch=60)
  tts.speak("Something else entirely, to disturb the library.", "de+klatt")
  again = tts.speak("Hello there.", "en+f1", rate_wpm=200, pitch=60)
  np.testing.assert_array_equal(first[0], again[0])
  assert first[1] == again[1]
  slow = tts.speak("Hello there.", "en+f1", rate_wpm=100, pitch=60)
  assert len(slow[0]) > 1.5 * len(first[0])
  with pytest.raises(ValueError, match="no voice"):
    tts.speak("Hello.", "xx-nonexistent")
  with pytest.raises(ValueError, match="rate"):
    tts.speak("Hello.", "en", rate_wpm=20)


def _steady(audio_seconds: float) -> np.ndarray:
  """Audio equally loud in every frame, so loudness leaves the visemes as they are."""
  t = np.arange(int(audio_seconds * SAMPLE_RATE)) / SAMPLE_RATE
  return (0.5 * np.sin(2 * np.pi * 200.0 * t)).astype(np.float32)


def test_the_mouth_shows_each_phonemes_viseme_inside_it():
  phonemes = [("_", 0.0, 0.2), ("m", 0.2, 0.3), ("a", 0.3, 0.49), ("p", 0.49, 0.52)]
  phonemes += [("u:", 0.52, 0.75), ("i", 0.75, 0.95), ("aI", 0.95, 1.15), ("_:", 1.15, 1.4)]
  events = [tts.PhonemeEvent(*p) for p in phonemes]
  num_frames = 35
  mouth = visemes.mouth_from_phonemes(events, _steady(1.4), num_frames)
  times = motion.frame_times(num_frames)
  sealed = [(e.start_s, e.end_s) for e in events if e.phoneme in ("m", "p")]
  checked = set()
  for event in events:
    parts = visemes.viseme_parts(event.phoneme) or ["_"]
    edges = np.linspace(event.start_s, event.end_s, len(parts) + 1)
    for part, start, end in zip(parts, edges[:-1], edges[1:]):
      target = visemes.REST if part == "_" else visemes.VISEMES[part]
      inside = (times > start + _MARGIN_S) & (times < end - _MARGIN_S)
      for s, e in sealed:
        inside &= (times < s - visemes.CLOSURE_RAMP_S) | (times > e + visemes.CLOSURE_RAMP_S)
      if part in visemes.SEALED:
        inside = (times > start) & (times < end)
        target = (0.0, target[1], target[2])
        np.testing.assert_array_equal(mouth[inside, 0], 0.0)
      else:
        np.testing.assert_allclose(
          mouth[inside], np.broadcast_to(target, (inside.sum(), 3)), atol=1e-6
        )
      checked |= set(np.flatnonzero(inside))
  # Most frames were checked, the one in the 30 ms p among them.
  assert len(checked) >= 20 and np.flatnonzero((times > 0.49) & (times < 0.52)).item() in checked
  assert np.all((mouth >= 0.0) & (mouth <= 1.0))


def test_the_mouth_of_real_speech_closes_for_bilabials_and_opens_for_open_vowels():
  audio, events = tts.speak("Mama baked a big apple pie for Pam.", "en+m4")
  num_frames = len(audio) // SAMPLES_PER_FRAME
  mouth = visemes.mouth_from_phonemes(events, audio, num_frames)
  times = motion.frame_times(num_frames)
  sealed = [e for e in events if e.phoneme in ("p", "b", "m")]
  closed_frames = open_frames = 0
  for event in events:
    inside = (times > event.start_s) & (times < event.end_s)
    if event in sealed:
      np.testing.assert_array_equal(mouth[inside, 0], 0.0)
      closed_frames += inside.sum()
    elif visemes.viseme_parts(event.phoneme) in (["a"], ["a", "a"]):
      inside &= (times > event.start_s + _MARGIN_S) & (times < event.end_s - _MARGIN_S)
      for s in sealed:
        inside &= (times < s.start_s - visemes.CLOSURE_RAMP_S) | (
          times > s.end_s + visemes.CLOSURE_RAMP_S
        )
      assert np.all(mouth[inside, 0] > 0.6) and np.all(mouth[inside, 2] > 0.6)
      open_frames += inside.sum()
  assert closed_frames >= 4 and open_frames >= 2


def test_rounded_vowels_narrow_the_mouth_and_spread_ones_widen_it():
  audio, events = tts.speak("Who knew? We see three blue shoes.", "en+f1")
  num_frames = len(audio) // SAMPLES_PER_FRAME
  width = visemes.mouth_from_phonemes(events, audio, num_frames)[:, 1]
  times = motion.frame_times(num_frames)
  seen = {"u": 0, "i": 0}
  for event in events:
    vowel = event.phoneme.rstrip(":")
    if vowel in seen:
      inside = (times > event.start_s + _MARGIN_S) & (times < event.end_s - _MARGIN_S)
      assert np.all(width[inside] < 0.3) if vowel == "u" else np.all(width[inside] > 0.8)
      seen[vowel] += inside.sum()
  assert min(seen.values()) >= 2


def test_unknown_phonemes_fall_back_by_class():
  assert visemes.viseme_parts("t2") == ["t"] and visemes.viseme_parts("aI@") == ["a", "I", "@"]
  events = [tts.PhonemeEvent("G", 0.0, 0.2), tts.PhonemeEvent("_!", 0.2, 0.4)]
  mouth = visemes.mouth_from_phonemes(events, _steady(0.4), 10)
  np.testing.assert_allclose(mouth[2], visemes.NEUTRAL_CONSONANT, atol=1e-6)
  np.testing.assert_allclose(mouth[7], visemes.REST, atol=1e-6)


def test_utterance_fills_the_clip_with_sentences_and_silent_gaps():
  num_samples = 6 * SAMPLE_RATE
  spoken = sentences.synthesize_utterance(3, num_samples, "neutral", "train", prosody_seed=5)
  audio = spoken.audio
  assert audio.shape == (num_samples,) and np.max(np.abs(audio)) == pytest.approx(0.8, abs=1e-6)
  assert len(spoken.sentence_ids) >= 2
  assert all(i.startswith(spoken.language + "-") for i in spoken.sentence_ids)
  assert spoken.events[-1].end_s <= num_samples / SAMPLE_RATE
  # Between sentences (a gap between one event's end and the next start) the audio is silent; in
  # vowels it is loud.
  gaps = [(a.end_s, b.start_s) for a, b in zip(spoken.events, spoken.events[1:])]
  gaps = [(a, b) for a, b in gaps if b - a > 0.2]
  assert len(gaps) == len(spoken.sentence_ids) - 1
  vowel_rms = [
    _rms(audio, e.start_s + _MARGIN_S, e.end_s - _MARGIN_S)
    for e in spoken.events
    if e.phoneme[0] in "aeiouAEIOU" and e.end_s - e.start_s > 0.08
  ]
  assert np.median(vowel_rms) > 0.05
  for start, end in gaps:
    assert _rms(audio, start + 0.01, end - 0.01) < 1e-4


def test_eval_split_holds_out_sentences_and_voices():
  for language in sentences.LANGUAGES:
    train, held_out = (set(sentences.sentence_ids(language, s)) for s in generate.SPLITS)
    assert held_out and not train & held_out
    assert train | held_out == set(range(len(sentences.LANGUAGES[language].sentences)))
  train, held_out = (set(sentences.variants(s)) for s in generate.SPLITS)
  assert len(held_out) >= 4 and not train & held_out
  assert train | held_out == set(sentences.VARIANTS)
  assert set(sentences.variants("custom")) == set(sentences.VARIANTS)
  spoken = {
    split: [
      sentences.synthesize_utterance(seed, SAMPLE_RATE // 2, "neutral", split, prosody_seed=seed)
      for seed in range(6)
    ]
    for split in generate.SPLITS
  }
  assert len({u.language for u in spoken["train"] + spoken["eval"]}) >= 3
  for split, utterances in spoken.items():
    for utterance in utterances:
      assert utterance.voice.split("+")[1] in sentences.variants(split)
      for sentence in utterance.sentence_ids:
        language, index = sentence.split("-")
        assert int(index) in sentences.sentence_ids(language, split)


def test_emotion_sets_rate_and_pitch():
  kwargs = dict(utterance_seed=1, num_samples=SAMPLE_RATE // 2, split="train", prosody_seed=2)
  sad, angry, happy = (
    sentences.synthesize_utterance(emotion=e, **kwargs) for e in ("sad", "angry", "happy")
  )
  assert sad.rate_wpm < angry.rate_wpm and sad.pitch < happy.pitch
  assert sad.pitch_range < happy.pitch_range
  assert sad.voice == angry.voice and sad.sentence_ids[0] == angry.sentence_ids[0]


def test_tts_clip_is_deterministic_and_records_its_speech():
  kwargs = dict(seconds=1.2, image_size=24, identity_seed=3, utterance_seed=4, speech="tts")
  clip = generate.make_clip(5, **kwargs)
  generate.make_clip(6, **{**kwargs, "utterance_seed": 7})
  assert clips.encode_clip(generate.make_clip(5, **kwargs)) == clips.encode_clip(clip)
  assert clip.audio.shape == (30 * SAMPLES_PER_FRAME,) and clip.motion.shape == (
    30,
    len(motion.MOTION_PARAMS),
  )
  speech = clip.meta["speech"]
  assert speech["source"] == "tts" and speech["language"] in sentences.LANGUAGES
  assert speech["voice"].split("+")[1] in sentences.VARIANTS and speech["sentences"]
  assert clip.meta["clip_id"] == "synthtalk-tts-train-5"
  # The mouth is the visemes of what was said in each emotion segment, recomputed from that
  # segment's voice (the voices crossfade over 20 ms where the emotion changes).
  segments = clip.meta["acting"]["segments"]
  for k, segment in enumerate(segments):
    end = segments[k + 1]["start"] if k + 1 < len(segments) else 30
    spoken = sentences.synthesize_utterance(
      4,
      len(clip.audio),
      segment["emotion"],
      "train",
      prosody_seed=5,
      intensity=segment["intensity"],
    )
    frames = slice(segment["start"], end)
    np.testing.assert_array_equal(
      visemes.mouth_from_phonemes(spoken.events, spoken.audio, 30)[frames], clip.motion[frames, :3]
    )
    samples = slice(
      segment["start"] * SAMPLES_PER_FRAME + (160 if k else 0),
      end * SAMPLES_PER_FRAME - (160 if k + 1 < len(segments) else 0),
    )
    # The intensity is stored rounded to 4 decimals: the voice differs by a rounding error.
    np.testing.assert_allclose(spoken.audio[samples], clip.audio[samples], atol=2e-3)
  # Blinks, brows and head pose are those a syllable clip of the same clip seed has.
  syllable_clip = generate.make_clip(5, **{**kwargs, "speech": "syllables"})
  np.testing.assert_array_equal(syllable_clip.motion[:, 3:], clip.motion[:, 3:])
  assert "speech" not in syllable_clip.meta
  changed = generate.make_clip(5, **{**kwargs, "utterance_seed": 8})
  assert not np.array_equal(changed.audio, clip.audio)
  with pytest.raises(UserError, match="speech source"):
    generate.make_clip(5, **{**kwargs, "speech": "singing"})


def test_cli_writes_a_tiny_tts_split(tmp_path):
  argv = ["--out", str(tmp_path), "--train-clips", "2", "--eval-clips", "1", "--seconds", "0.8"]
  argv += ["--image-size", "16", "--workers", "2", "--speech", "tts"]
  assert synthtalk_main.main(argv) == 0
  for split, count in (("train", 2), ("eval", 1)):
    written = list(clips.read_clips([str(p) for p in sorted(tmp_path.glob(f"{split}-*"))]))
    assert len(written) == count
    for index, clip in enumerate(written):
      assert clip.meta["split"] == split and clip.meta["speech"]["source"] == "tts"
      assert clip.meta["speech"]["voice"].split("+")[1] in sentences.variants(split)
      # Written by pool workers, exactly what this process makes.
      again = generate.make_clip(
        **generate.clip_seeds(split, 0, index), seconds=0.8, image_size=16, speech="tts"
      )
      np.testing.assert_array_equal(clip.frames, again.frames)
      np.testing.assert_array_equal(clip.audio, clips.decode_clip(clips.encode_clip(again)).audio)
      assert clip.meta == again.meta
