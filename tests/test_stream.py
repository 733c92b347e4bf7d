"""The streaming engine: streamed equals whole-file, compile once, constant state.

(A fresh process loading every program from the disk cache: tests/test_bench.py, through the
benchmark's startup measurement.)"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_configs import tiny_config

from jaxtalk.bench.model import random_params
from jaxtalk.inference.compilation import counting_compiles
from jaxtalk.inference.generate import TalkingHead
from jaxtalk.inference.motion_sampler import padded_audio_frames, sample_motion
from jaxtalk.inference.stream import MotionStream, StreamLayout
from jaxtalk.timebase import SAMPLES_PER_FRAME as SPF


@pytest.fixture(scope="module")
def head():
  config = tiny_config()
  # Guidance on, three chunks in flight: the layout's least simple case.
  config.sample.update(motion_steps=3, chunks_in_flight=3, cfg_scale=2.0)
  return TalkingHead(config, random_params(config))


@pytest.fixture(scope="module")
def portrait():
  return np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def speech_like(num_samples, seed=0):
  """Noise under a syllable-rate envelope, so the audio features change from frame to frame."""
  t = np.arange(num_samples) / 16_000
  envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
  return (0.3 * envelope * np.random.default_rng(seed).standard_normal(num_samples)).astype(
    np.float32
  )


def streamed(session, waveform, piece_sizes):
  out, start = [], 0
  for size in piece_sizes:
    out.append(session.push(waveform[start : start + size]))
    start += size
  out.append(session.push(waveform[start:]))
  out.append(session.finish())
  return np.concatenate(out)


def test_streamed_frames_equal_the_whole_file_however_the_audio_is_cut(head, portrait):
  waveform = speech_like(37 * SPF + 123)  # 37 frames and a partial one, which is not a frame
  options = head.default_options()
  whole = head.generate(portrait, waveform, options)
  assert whole.shape == (37, 16, 16, 3)
  sizes = np.random.default_rng(1).integers(1, 3 * SPF, 30)
  pieces = streamed(head.stream(portrait, options), waveform, sizes)
  np.testing.assert_array_equal(pieces, whole)
  short = waveform[: 9 * SPF]
  one_sample_at_a_time = streamed(head.stream(portrait, options), short, [1] * len(short))
  np.testing.assert_array_equal(one_sample_at_a_time, head.generate(portrait, short, options))


@pytest.mark.parametrize("num_samples", [0, SPF - 1, SPF, 5 * SPF + 7])
def test_a_video_has_one_frame_per_whole_40ms(head, portrait, num_samples):
  frames = head.generate(portrait, speech_like(num_samples), head.default_options())
  assert frames.shape == (num_samples // SPF, 16, 16, 3)


def test_frames_leave_as_soon_as_their_lookahead_has_arrived(head, portrait):
  session = head.stream(portrait, head.default_options())
  layout = session.motion.layout
  assert session.lookahead_ms == layout.lookahead_frames * 40
  # Frame f of chunk c is out once frame (c + in flight) * chunk + radius + context has arrived.
  out = 0
  for pushed in range(1, 40):
    out += len(session.push(speech_like(SPF, seed=pushed)))
    chunks_final = max(
      0, (pushed - layout.radius - layout.context) // layout.chunk - (layout.chunks_in_flight - 1)
    )
    assert out == chunks_final * layout.chunk, pushed
  assert out + len(session.finish()) == 39


def test_block_features_equal_one_pass_over_the_file(head):
  """Each block hears its encoder's stated context, so it comes out as it would mid-file."""
  layout = StreamLayout.of(head.models, head.default_options().schedule)
  waveform = speech_like(60 * SPF)
  params = head.params["audio_encoder"]
  one_pass = head.models.audio_encoder.apply({"params": params}, jnp.asarray(waveform)[None])
  features = head.empty_features(layout.feature_frames)
  first = 10  # the block whose features start at frame `first`
  for block in range(3):
    start = (first + block * layout.chunk - layout.context) * SPF
    window = waveform[start : start + layout.window_frames * SPF][None]
    features = head.push_features(head.params, features, window)
  got = features[0, -3 * layout.chunk :]
  np.testing.assert_allclose(got, one_pass[0, first : first + 3 * layout.chunk], atol=2e-5)


def test_streamed_motion_equals_the_whole_file_sampler(head, portrait):
  """The engine's advances, one per block, are the scan of `sample_motion` over the same audio."""
  options = head.default_options()
  schedule, motion = options.schedule, head.models.motion
  layout = StreamLayout.of(head.models, schedule)
  waveform, num_frames = speech_like(23 * SPF), 23
  stream = MotionStream(head, portrait, options)
  latents = np.concatenate([stream.push(waveform), stream.finish()])

  # The same audio as one file: the engine's silence before it, and silence after.
  front, back = padded_audio_frames(motion, schedule, num_frames)
  lead = layout.lead_frames + layout.radius - layout.context - front  # silence beyond `front`
  padded = np.zeros((lead + front + num_frames + back + layout.context) * SPF, np.float32)
  padded[(lead + front) * SPF :][: len(waveform)] = waveform
  features = head.models.audio_encoder.apply(
    {"params": head.params["audio_encoder"]}, jnp.asarray(padded)[None]
  )[:, lead:][:, : front + num_frames + back]
  rng = jax.random.fold_in(jax.random.key(options.seed), 1)
  reference = head.reference_latent(head.params, portrait)
  whole = sample_motion(
    motion,
    head.params["motion"],
    features,
    reference,
    rng,
    schedule,
    num_frames,
    guidance=options.guidance,
  )
  np.testing.assert_allclose(latents, whole[0], atol=1e-4)


def test_other_controls_and_guidance_values_compile_nothing(head, portrait):
  """Acting controls and guidance scales are inputs: only turning a guidance on or off (a scale
  of 1 against any other) is another program."""
  options = dataclasses.replace(head.default_options(), emotion="happy", emotion_cfg_scale=2.0)
  head.generate(portrait, speech_like(11 * SPF), options)
  with counting_compiles() as count:
    for changed in (
      dict(cfg_scale=3.5, emotion_cfg_scale=1.5, emotion_intensity=0.3),
      dict(emotion="sad", pose_amplitude=0.0, blink_rate=0.0, cfg_scale=0.0),
    ):
      head.generate(portrait, speech_like(11 * SPF), dataclasses.replace(options, **changed))
  assert count.programs == 0, count


def test_another_length_compiles_nothing(head, portrait):
  options = head.default_options()
  head.generate(portrait, speech_like(11 * SPF), options)
  with counting_compiles() as count:
    frames = head.generate(portrait, speech_like(29 * SPF + 5), options)
    session = head.stream(portrait, options)
    for piece in range(7):
      session.push(speech_like(1000 + 333 * piece))
    session.finish()
  assert len(frames) == 29
  assert count.programs == 0, count


def test_the_state_carried_between_chunks_does_not_grow(head, portrait):
  def carried(pushes):
    stream = MotionStream(head, portrait, head.default_options())
    for i in range(pushes):
      stream.push(speech_like(SPF * 3 + 17, seed=i))
    state = jax.tree.leaves((stream._state, stream._features))
    return [(x.shape, x.dtype) for x in state], len(stream._waveform)

  (shapes_few, waiting_few), (shapes_many, waiting_many) = carried(3), carried(40)
  assert shapes_few == shapes_many
  # Audio waits only until its block is encoded: less than one block's window.
  layout = StreamLayout.of(head.models, head.default_options().schedule)
  assert max(waiting_few, waiting_many) < layout.window_frames * SPF


def test_push_after_finish_is_refused(head, portrait):
  session = head.stream(portrait, head.default_options())
  session.finish()
  with pytest.raises(RuntimeError, match="after finish"):
    session.push(np.zeros(SPF, np.float32))
