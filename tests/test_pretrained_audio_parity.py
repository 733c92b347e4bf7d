"""Imported speech encoders against the PyTorch reference: every hidden state, float32.

Each case writes a tiny random Hugging Face model with `save_pretrained`, imports the folder and
compares all layers' hidden states on the same waveform. The waveform goes through the
reference's own feature extractor on its side (Whisper's log-mel) and through ours on the other.
"""

import numpy as np
import pytest
import transformers
from pretrained_audio_models import VARIANTS, reference_hidden_states, save_tiny_model

from jaxtalk.models.audio.pretrained.backbones import make_backbone
from jaxtalk.models.audio.pretrained.importer import read_checkpoint
from jaxtalk.models.audio.pretrained.whisper_mel import whisper_log_mel

TOLERANCE = 2e-5  # max |ours - reference|, relative to the largest |reference| of the layer


def _speech_like(batch, samples, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(samples) / 16000
  tone = np.sin(2 * np.pi * rng.uniform(100, 300, (batch, 1)) * t) * (
    0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
  )
  return (0.3 * tone + 0.05 * rng.standard_normal((batch, samples))).astype(np.float32)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_hidden_state_matches_the_reference(variant, tmp_path):
  reference = save_tiny_model(variant, tmp_path)
  spec, params = read_checkpoint(tmp_path)
  # Not a multiple of the frame stride
  samples = spec.segment_samples if variant == "whisper" else 12345
  waveform = _speech_like(2, samples)

  expected = reference_hidden_states(reference, waveform)
  ours = np.stack(make_backbone(spec).apply({"params": params}, waveform))

  assert ours.shape == expected.shape, variant
  assert ours.shape[0] == spec.num_layers + 1
  assert ours.shape[2] == spec.num_frames(samples)
  for layer, (a, b) in enumerate(zip(ours, expected)):
    error = np.max(np.abs(a - b)) / np.max(np.abs(b))
    assert error < TOLERANCE, f"{variant} hidden state {layer}: relative error {error:.2e}"


def test_whisper_log_mel_matches_the_feature_extractor():
  waveform = _speech_like(2, 16000, seed=1)
  waveform[1, 8000:] = 0.0  # trailing silence exercises the 80 dB floor
  extractor = transformers.WhisperFeatureExtractor(feature_size=80, chunk_length=1)
  expected = extractor(list(waveform), sampling_rate=16000, return_tensors="np").input_features
  ours = np.asarray(whisper_log_mel(waveform, n_mels=80)).transpose(0, 2, 1)
  np.testing.assert_allclose(ours, expected, atol=2e-5)


def test_wav2vec2_input_normalisation_follows_the_preprocessor_config(tmp_path):
  save_tiny_model("wav2vec2-base", tmp_path)
  assert not read_checkpoint(tmp_path)[0].normalize_input  # "group" models: raw audio by default
  transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(tmp_path)
  assert read_checkpoint(tmp_path)[0].normalize_input
