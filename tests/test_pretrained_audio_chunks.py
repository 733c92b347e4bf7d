"""Long audio in segments, and streaming, against one pass over the whole file.

Without transformer layers a wav2vec2 (layer-norm variant) sees only +-8 frames (its positional
conv) around each frame, so segmented and streamed features must equal one pass exactly once the
context covers that. With attention the difference is what attention to audio beyond the context
adds; random tiny models attend almost uniformly, the worst case, and the bound below is measured.
"""

import jax
import numpy as np
import pytest
import transformers
from pretrained_audio_models import save_tiny_model

from jaxtalk.config import base_config
from jaxtalk.inference.stream import encode_block
from jaxtalk.models.audio.pretrained.importer import read_checkpoint
from jaxtalk.models.factory import audio_encoder
from jaxtalk.timebase import SAMPLES_PER_FRAME as SPF


def make_encoder(folder, kind, **fields):
  """The encoder of the model in `folder`, with the base config's settings but `fields`."""
  audio = base_config().audio
  audio.update(encoder=kind, checkpoint=str(folder), dim=8, **fields)
  return audio_encoder(audio, np.float32)


def _encoder(folder, variant, **fields):
  save_tiny_model(
    variant, folder, **({"num_hidden_layers": 0} if fields.pop("local", False) else {})
  )
  transformers.Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(folder)
  spec, backbone = read_checkpoint(folder)
  encoder = make_encoder(folder, spec.kind, **fields)
  waveform = np.random.default_rng(0).standard_normal((1, 40 * SPF)).astype(np.float32) * 0.1
  params = jax.jit(encoder.init)(jax.random.key(0), waveform[:, :SPF])
  params["params"]["backbone"] = backbone
  return encoder, params, waveform


def _features(encoder, params, waveform):
  return np.asarray(jax.jit(encoder.apply)(params, waveform))


def _relative_error(a, b):
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def local_encoder(tmp_path_factory):
  return _encoder(tmp_path_factory.mktemp("local"), "wav2vec2-large", local=True, layer=-1)


def test_segments_with_enough_context_match_one_pass(local_encoder):
  encoder, params, waveform = local_encoder
  one_pass = _features(encoder, params, waveform)
  # 8 segments
  segmented = _features(encoder.clone(segment_seconds=0.6, context_seconds=0.2), params, waveform)
  assert segmented.shape == one_pass.shape == (1, 40, 8)
  assert _relative_error(segmented, one_pass) < 1e-5


def test_streamed_blocks_match_one_pass(local_encoder):
  """The streaming engine's blocks: a chunk of frames with the encoder's context on both sides."""
  encoder = local_encoder[0].clone(context_seconds=0.32)  # 8 frames: covers the positional conv
  _, params, waveform = local_encoder
  context, chunk = encoder.context_frames, 4
  blocks = [
    encode_block(
      encoder,
      params,
      waveform[:, (start - context) * SPF :][:, : (chunk + 2 * context) * SPF],
      chunk,
    )
    for start in range(context, 40 - chunk - context + 1, chunk)
  ]
  streamed = np.concatenate(blocks, axis=1)
  one_pass = _features(encoder, params, waveform)[:, context : context + streamed.shape[1]]
  assert streamed.shape == (1, 24, 8)
  assert _relative_error(streamed, one_pass) < 1e-5


def test_segments_of_a_model_with_attention_stay_within_the_stated_bound(tmp_path):
  encoder, params, waveform = _encoder(tmp_path, "wav2vec2-base", weighted_layers=True)
  one_pass = _features(encoder, params, waveform)
  segmented = _features(encoder.clone(segment_seconds=1.0, context_seconds=0.3), params, waveform)
  error = _relative_error(segmented, one_pass)
  print(f"segmented vs one pass, random model with attention: relative error {error:.2e}")
  assert error < 0.05


def test_whisper_pads_short_audio_and_segments_long_audio(tmp_path):
  save_tiny_model("whisper", tmp_path)
  spec, backbone = read_checkpoint(tmp_path)  # a 1-second segment
  encoder = make_encoder(tmp_path, "whisper", context_seconds=0.2)
  waveform = np.random.default_rng(1).standard_normal((1, 60 * SPF)).astype(np.float32) * 0.1
  params = jax.jit(encoder.init)(jax.random.key(0), waveform[:, :SPF])
  params["params"]["backbone"] = backbone

  long = _features(encoder, params, waveform)  # 2.4 s: segments of 1 s, chunks of 0.6 s
  # Exactly one segment, no padding
  first_segment = _features(encoder, params, waveform[:, : 25 * SPF])
  short = _features(encoder, params, waveform[:, : 10 * SPF])  # padded to the segment
  assert long.shape == (1, 60, 8) and short.shape == (1, 10, 8)
  # The first chunk comes from the first segment; a padded short input differs from it only
  # through what attention sees of the padding.
  np.testing.assert_allclose(long[:, :15], first_segment[:, :15], atol=1e-5)
  assert np.all(np.isfinite(short))
