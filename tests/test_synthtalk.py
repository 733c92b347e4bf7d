"""SynthTalk: determinism, exact audio/mouth ground truth, a readable face, disjoint splits."""

import itertools

import numpy as np
import pytest

from jaxtalk.data import clips
from jaxtalk.data.synthtalk import face, generate, motion, speech
from jaxtalk.errors import UserError
from jaxtalk.timebase import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME


def _frame_rms(audio: np.ndarray) -> np.ndarray:
  return np.sqrt(np.mean(audio.reshape(-1, SAMPLES_PER_FRAME) ** 2, axis=1))


def _still(**values: float) -> np.ndarray:
  """One frame of motion: mouth closed at rest width, eyes open, head straight, unless overridden."""
  defaults = {"mouth_width": motion.REST_WIDTH}
  return np.array(
    [values.get(name, defaults.get(name, 0.0)) for name in motion.MOTION_PARAMS], np.float32
  )


def test_make_clip_is_deterministic_and_seeds_matter():
  kwargs = dict(seconds=0.8, image_size=32, identity_seed=3, utterance_seed=4)
  first = clips.encode_clip(generate.make_clip(5, **kwargs))
  assert clips.encode_clip(generate.make_clip(5, **kwargs)) == first
  for changed in ({"identity_seed": 6}, {"utterance_seed": 6}):
    assert clips.encode_clip(generate.make_clip(5, **{**kwargs, **changed})) != first


def test_mouth_ground_truth_can_be_recomputed_from_clip_metadata():
  """Each emotion segment speaks the utterance in its own voice; mouth and audio are that voice's
  within the segment (the audio crossfades over 20 ms at a change)."""
  num_frames = 50
  acting = motion.Acting(
    (motion.EmotionSegment(0, "sad", 0.8), motion.EmotionSegment(30, "happy", 0.5))
  )
  clip = generate.make_clip(
    9, seconds=2.0, image_size=16, identity_seed=2, utterance_seed=8, acting=acting
  )
  assert [s["emotion"] for s in clip.meta["acting"]["segments"]] == ["sad", "happy"]
  utterance = clip.meta["seeds"]["utterance"]
  change = 30 * SAMPLES_PER_FRAME
  for segment, frames in zip(acting.segments, (slice(0, 30), slice(30, num_frames))):
    spoken = speech.synthesize_utterance(
      utterance, len(clip.audio), segment.emotion, segment.intensity
    )
    np.testing.assert_array_equal(
      motion.mouth_from_schedule(spoken.schedule, num_frames)[frames], clip.motion[frames, :3]
    )
    samples = slice(0, change - 160) if frames.start == 0 else slice(change + 160, None)
    np.testing.assert_allclose(spoken.audio[samples], clip.audio[samples], atol=1e-6)


def test_acting_shows_on_the_face():
  """Emotions move brows, mouth corners and lids in their directions, scaled by intensity; the
  clip's pose amplitude scales head motion (0: the head keeps one pose); its blink rate is kept."""
  schedule = speech.synthesize_utterance(3, 60 * SAMPLE_RATE).schedule
  num_frames = 60 * FPS
  column = lambda m, name: m[:, motion.MOTION_PARAMS.index(name)]
  means = {}
  for emotion in speech.EMOTIONS:
    for intensity in (0.5, 1.0):
      acting = motion.Acting.constant(emotion, intensity, blink_rate=0.0)
      m = motion.sample_motion(schedule, num_frames, acting, np.random.default_rng(0))
      means[emotion, intensity] = {
        name: column(m, name).mean() for name in ("brow", "smile", "blink")
      }
  neutral = means["neutral", 1.0]
  for emotion, sign in (("happy", 1), ("sad", -1), ("angry", -1)):
    half, full = means[emotion, 0.5], means[emotion, 1.0]
    for name, direction in (("smile", sign), ("blink", 1)):
      assert direction * (neutral[name] - 0.02) < direction * half[name] < direction * full[name]
  assert means["angry", 1.0]["brow"] < means["sad", 1.0]["brow"] < 0 < means["happy", 1.0]["brow"]

  pose = lambda amplitude: np.stack(
    [
      column(
        motion.sample_motion(
          schedule,
          num_frames,
          motion.Acting.constant("neutral", pose_amplitude=amplitude),
          np.random.default_rng(1),
        ),
        name,
      )
      for name in motion.POSE_PARAMS
    ]
  ).std(axis=1)
  assert np.all(pose(0.0) < 1e-6)
  np.testing.assert_allclose(pose(2.0) / pose(1.0), 2.0, rtol=0.05)

  for rate in (0.0, 12.0, 30.0):
    m = motion.sample_motion(
      schedule,
      num_frames,
      motion.Acting.constant("neutral", blink_rate=rate),
      np.random.default_rng(2),
    )
    blink = column(m, "blink")
    blinks = np.sum((blink[1:] > 0.5) & (blink[:-1] <= 0.5))
    assert abs(blinks - rate) <= max(0.25 * rate, 0), (rate, blinks)


def test_emotion_changes_mid_clip():
  num_frames = 200
  acting = motion.Acting(
    (motion.EmotionSegment(0, "happy", 1.0), motion.EmotionSegment(100, "sad", 1.0)), blink_rate=0.0
  )
  m = motion.with_random_motion(
    np.zeros((num_frames, 3), np.float32), acting, np.random.default_rng(0)
  )
  smile = m[:, motion.MOTION_PARAMS.index("smile")]
  assert smile[:90].mean() > 0.5 and smile[110:].mean() < -0.4
  assert np.max(np.abs(np.diff(smile))) < 0.3  # ramped, not a jump
  meta = acting.to_meta()
  assert meta["segments"][1] == {
    "start": 100,
    "emotion": "sad",
    "intensity": 1.0,
    "blink_rate": 0.0,
  }


def test_drawn_acting_covers_the_controls():
  rng = np.random.default_rng(0)
  drawn = [motion.sample_acting(rng, 100, "neutral") for _ in range(300)]
  changes = np.mean([len(a.segments) == 2 for a in drawn])
  still = np.mean([a.pose_amplitude == 0 for a in drawn])
  no_blinks = np.mean([a.blink_rate == 0 for a in drawn])
  assert 0.4 < changes < 0.6 and 0.08 < still < 0.25 and 0.04 < no_blinks < 0.18
  assert max(a.pose_amplitude for a in drawn) > 2.0
  for a in drawn:
    if len(a.segments) == 2:
      assert a.segments[1].emotion != "neutral" and 30 <= a.segments[1].start <= 70


@pytest.mark.parametrize("seconds", [0.52, 1.0, 2.3])
def test_clip_shapes_and_audio_length(seconds):
  clip = generate.make_clip(
    1, seconds=seconds, image_size=24, identity_seed=1, utterance_seed=1, emotion="happy"
  )
  num_frames = round(seconds * FPS)
  assert clip.frames.shape == (num_frames, 24, 24, 3) and clip.frames.dtype == np.uint8
  assert clip.audio.shape == (num_frames * SAMPLES_PER_FRAME,) and clip.audio.dtype == np.float32
  assert (
    clip.motion.shape == (num_frames, len(motion.MOTION_PARAMS)) and clip.motion.dtype == np.float32
  )
  assert clip.identity.shape == (len(face.IDENTITY_PARAMS),)
  assert clip.meta["emotion"] == "happy" and clip.meta["source"] == "synthtalk"


@pytest.mark.parametrize("emotion", speech.EMOTIONS)
def test_mouth_opening_follows_audio_loudness(emotion):
  num_frames = 150
  utterance = speech.synthesize_utterance(11, num_frames * SAMPLES_PER_FRAME, emotion)
  assert np.max(np.abs(utterance.audio)) == pytest.approx(speech.PEAK, abs=1e-6)
  opening = motion.mouth_from_schedule(utterance.schedule, num_frames)[:, 0]
  loudness = _frame_rms(utterance.audio)
  assert np.corrcoef(opening, loudness)[0, 1] > 0.7
  # Where the audio is silent (pauses, closures) the mouth is shut, and where it opens wide, the
  # frame is loud.
  silent = loudness < 0.02 * loudness.max()
  assert silent.sum() >= 10
  assert np.all(opening[silent] < 0.02)
  assert np.all(loudness[opening > 0.5] > 0.2 * loudness.max())


def test_vowels_shape_the_spectrum_and_the_mouth():
  """'i' (F2 at 2.3 kHz) has far more energy above 1.5 kHz than 'u' (F2 at 0.9 kHz), and spreads
  the lips wider."""
  utterance = speech.synthesize_utterance(2, 20 * SAMPLE_RATE)
  schedule = utterance.schedule
  high_share = {v: [] for v in (speech.VOWELS.index("i"), speech.VOWELS.index("u"))}
  for onset, offset, vowel in zip(schedule.onsets, schedule.offsets, schedule.vowels):
    if vowel in high_share:
      segment = utterance.audio[int(onset * SAMPLE_RATE) : int(offset * SAMPLE_RATE)]
      power = np.abs(np.fft.rfft(segment * np.hanning(len(segment)))) ** 2
      freqs = np.fft.rfftfreq(len(segment), 1.0 / SAMPLE_RATE)
      high_share[vowel].append(power[freqs > 1500.0].sum() / power.sum())
  i_shares, u_shares = high_share.values()
  assert len(i_shares) >= 3 and len(u_shares) >= 3
  assert min(i_shares) > 5 * max(u_shares)
  assert (
    motion.VOWEL_WIDTH[speech.VOWELS.index("i")]
    > motion.REST_WIDTH
    > motion.VOWEL_WIDTH[speech.VOWELS.index("u")]
  )


def test_emotion_changes_prosody_not_content():
  sad = speech.synthesize_utterance(7, 8 * SAMPLE_RATE, "sad").schedule
  angry = speech.synthesize_utterance(7, 8 * SAMPLE_RATE, "angry").schedule
  assert len(angry.vowels) > len(sad.vowels)  # angry speech is faster
  np.testing.assert_array_equal(angry.vowels[: len(sad.vowels)], sad.vowels)
  assert np.mean(angry.loudness) > np.mean(sad.loudness)


def test_motion_blinks_and_head():
  schedule = speech.synthesize_utterance(3, 30 * SAMPLE_RATE).schedule
  columns = {name: i for i, name in enumerate(motion.MOTION_PARAMS)}
  for emotion in speech.EMOTIONS:
    acting = motion.Acting.constant(emotion)
    result = motion.sample_motion(schedule, 30 * FPS, acting, np.random.default_rng(0))
    np.testing.assert_array_equal(result[:, :3], motion.mouth_from_schedule(schedule, 30 * FPS))
    blink = result[:, columns["blink"]]
    blinks = np.sum((blink[1:] > 0.5) & (blink[:-1] <= 0.5))
    expected = acting.segment_blink_rate(acting.segments[0]) / 2
    assert 0.5 * expected <= blinks <= 1.5 * expected + 1
    assert np.mean(blink > 0.5) < 0.15
    head = result[:, [columns["yaw"], columns["pitch"], columns["roll"]]]
    assert np.all(np.abs(head) <= motion.HEAD_LIMIT_DEG) and np.all(head.std(axis=0) > 0.5)
    assert np.max(np.abs(np.diff(head, axis=0))) < 2.0  # smooth: under 2 degrees per frame
    shift = result[:, [columns["tx"], columns["ty"]]]
    assert np.all(np.abs(shift) <= motion.HEAD_SHIFT_LIMIT) and np.all(shift.std(axis=0) > 0.005)
    assert np.max(np.abs(np.diff(shift, axis=0))) < 0.01  # under a third of a pixel per frame at 64


def test_open_mouth_changes_only_the_lower_middle_of_the_face(monkeypatch):
  identity = face.sample_identity(np.random.default_rng(0))
  closed = face.render_face(identity, _still(), 64).astype(np.int32)
  opened = face.render_face(identity, _still(mouth_open=1.0, jaw=1.0), 64).astype(np.int32)
  diff = np.abs(opened - closed).sum(axis=-1)
  assert diff[34:60, 16:48].sum() > 0.9 * diff.sum()
  # Fully open, the dark opening is ~8 px tall.
  dark = opened.sum(-1) < closed.sum(-1) - 150
  rows = np.flatnonzero(dark.any(axis=1))
  assert 6 <= rows.max() - rows.min() + 1 <= 10
  # Lips included, the mouth spans 12-18 px from rounded to spread; measured against the same face
  # drawn without a mouth.
  rendered = {
    width: face.render_face(identity, _still(mouth_open=0.5, mouth_width=width), 64).astype(
      np.int32
    )
    for width in (0.0, 1.0)
  }
  monkeypatch.setattr(face, "_paint_mouth", lambda *args: None)
  mouthless = face.render_face(identity, _still(mouth_open=0.5), 64).astype(np.int32)
  for width, (low, high) in ((0.0, (12, 15)), (1.0, (17, 20))):
    cols = np.flatnonzero((np.abs(rendered[width] - mouthless).sum(-1) > 60).any(axis=0))
    assert low <= cols.max() - cols.min() + 1 <= high


def test_blink_closes_the_eyes_and_pose_moves_the_features():
  identity = face.sample_identity(np.random.default_rng(1))
  rest = face.render_face(identity, _still(), 64).astype(np.int32)
  blink = np.abs(face.render_face(identity, _still(blink=1.0), 64).astype(np.int32) - rest).sum(-1)
  assert blink[18:34, 12:52].sum() > 0.9 * blink.sum() > 0
  for pose in ({"yaw": 8.0}, {"pitch": 8.0}, {"roll": 8.0}, {"tx": 0.05}, {"ty": 0.05}):
    turned = face.render_face(identity, _still(**pose), 64).astype(np.int32)
    assert np.abs(turned - rest).mean() > 1.0


def test_the_head_translates_as_one_with_its_light_and_photographic_detail():
  """Moved by exactly 4 px, the head's inside (texture and lighting included) is the same pixels."""
  identity = face.sample_identity(np.random.default_rng(4))
  identity[face.IDENTITY_PARAMS.index("skin_detail")] = 0.035
  identity[face.IDENTITY_PARAMS.index("light_strength")] = 0.4
  rest = face.render_face(identity, _still(), 64).astype(np.int32)
  moved = face.render_face(identity, _still(tx=4 / 32, ty=2 / 32), 64).astype(np.int32)
  inside = (slice(14, 40), slice(20, 44))  # forehead to mouth, between the cheeks
  shifted = moved[
    inside[0].start + 2 : inside[0].stop + 2, inside[1].start + 4 : inside[1].stop + 4
  ]
  assert np.abs(shifted - rest[inside]).max() <= 2
  assert np.abs(moved[inside] - rest[inside]).mean() > 5.0  # it did move


def test_identities_differ_in_light_and_photographic_background():
  rng = np.random.default_rng(5)
  identity = face.sample_identity(rng)
  identity[face.IDENTITY_PARAMS.index("bg_photo")] = 1.0
  other_photo = identity.copy()
  other_photo[face.IDENTITY_PARAMS.index("texture_seed")] += 1
  lit_left, lit_right = identity.copy(), identity.copy()
  lit_left[face.IDENTITY_PARAMS.index("light_x")] = -1.0
  lit_right[face.IDENTITY_PARAMS.index("light_x")] = 1.0
  for changed in (lit_left, lit_right):
    changed[face.IDENTITY_PARAMS.index("light_y")] = 0.0
    changed[face.IDENTITY_PARAMS.index("light_strength")] = 0.4
  render = lambda ident: face.render_face(ident, _still(), 64).astype(np.float32)
  corner = (slice(0, 10), slice(0, 10))
  assert np.abs(render(identity)[corner] - render(other_photo)[corner]).mean() > 5.0
  # Lit from image left, the left cheek is brighter than the right one; lit from the right, darker.
  left_cheek, right_cheek = (slice(30, 36), slice(18, 24)), (slice(30, 36), slice(40, 46))
  for ident, sign in ((lit_left, 1.0), (lit_right, -1.0)):
    image = render(ident)
    assert sign * (image[left_cheek].mean() - image[right_cheek].mean()) > 10.0


def test_render_clip_matches_render_face_and_identities_differ():
  identity = face.sample_identity(np.random.default_rng(2))
  frames_motion = np.stack([_still(mouth_open=0.3 * t, yaw=t) for t in range(3)])
  frames = face.render_clip(identity, frames_motion, 40)
  for t in range(3):
    np.testing.assert_array_equal(frames[t], face.render_face(identity, frames_motion[t], 40))
  renders = [
    face.render_face(face.sample_identity(np.random.default_rng(s)), _still(), 48).astype(
      np.float32
    )
    for s in range(8)
  ]
  for a, b in itertools.combinations(renders, 2):
    assert np.abs(a - b).mean() > 10.0


def test_splits_are_disjoint_and_round_trip(tmp_path):
  train = generate.generate_split(str(tmp_path), "train", 5, 0.4, 24, seed=0, workers=1)
  held_out = generate.generate_split(str(tmp_path), "eval", 3, 0.4, 24, seed=0, workers=2)
  train_clips = list(clips.read_clips(train))
  eval_clips = list(clips.read_clips(held_out))
  assert len(train_clips) == 5 and len(eval_clips) == 3
  assert {c.meta["split"] for c in train_clips} == {"train"} and {
    c.meta["split"] for c in eval_clips
  } == {"eval"}
  for key in ("identity_id", "utterance_id", "clip_id"):
    assert not {c.meta[key] for c in train_clips} & {c.meta[key] for c in eval_clips}
  assert len({c.meta["identity_id"] for c in train_clips}) == 3  # two clips per identity
  # Parallel rendering writes exactly what rendering in this process would.
  again = generate.generate_split(str(tmp_path / "serial"), "eval", 3, 0.4, 24, seed=0, workers=1)
  for a, b in zip(eval_clips, clips.read_clips(again)):
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.meta == b.meta


def test_seed_ranges_of_splits_never_overlap():
  largest = generate._SEED_SPAN - 1
  for split in generate.SPLITS:
    for seed, index in ((0, 0), (largest, largest)):
      seeds = generate.clip_seeds(split, seed, index)
      assert generate.split_of_seeds(seeds["identity_seed"], seeds["utterance_seed"]) == split
  assert generate.split_of_seeds(-1, 0) == "custom"


def test_bad_requests_raise_user_errors(tmp_path):
  with pytest.raises(UserError, match="split"):
    generate.generate_split(str(tmp_path), "validation", 1, 0.4, 24, seed=0)
  with pytest.raises(UserError, match="seed"):
    generate.generate_split(str(tmp_path), "train", 1, 0.4, 24, seed=-1)
  with pytest.raises(UserError, match="emotion"):
    generate.make_clip(
      0, seconds=0.4, image_size=24, identity_seed=0, utterance_seed=0, emotion="bored"
    )
