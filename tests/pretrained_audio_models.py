"""Tiny random Hugging Face speech encoders, saved as local checkpoint folders for the tests.

Each variant keeps the real frame geometry (320-sample stride, 16 kHz) at a width of 16-32, so a
folder is written in well under a second. Every parameter gets noise added before saving: the
reference initialises biases to 0 and norm scales to 1, which would hide a bias or scale imported
into the wrong place.
"""

import torch
import transformers

torch.set_num_threads(1)

_WAV2VEC2 = dict(
  hidden_size=32,
  num_hidden_layers=2,
  num_attention_heads=4,
  intermediate_size=48,
  conv_dim=(16,) * 7,
  num_conv_pos_embeddings=16,
  num_conv_pos_embedding_groups=4,
)
_STABLE = dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)

VARIANTS = {
  "wav2vec2-base": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model, _WAV2VEC2),
  "wav2vec2-large": (
    transformers.Wav2Vec2Config,
    transformers.Wav2Vec2Model,
    {**_WAV2VEC2, **_STABLE},
  ),
  "hubert-base": (transformers.HubertConfig, transformers.HubertModel, _WAV2VEC2),
  "hubert-large": (transformers.HubertConfig, transformers.HubertModel, {**_WAV2VEC2, **_STABLE}),
  # max_source_positions=50: a 1-second segment instead of 30 s.
  "whisper": (
    transformers.WhisperConfig,
    transformers.WhisperModel,
    dict(
      d_model=32,
      encoder_layers=2,
      encoder_attention_heads=4,
      encoder_ffn_dim=48,
      decoder_layers=1,
      decoder_attention_heads=4,
      decoder_ffn_dim=48,
      vocab_size=64,
      max_source_positions=50,
      max_target_positions=16,
      num_mel_bins=80,
      pad_token_id=1,
      bos_token_id=2,
      eos_token_id=3,
      decoder_start_token_id=2,
      begin_suppress_tokens=None,
      suppress_tokens=None,
    ),
  ),
}


def save_tiny_model(variant: str, folder, seed: int = 0, **overrides):
  """Writes a random `variant` model to `folder` (config.json + model.safetensors); returns it in eval mode."""
  config_cls, model_cls, fields = VARIANTS[variant]
  torch.manual_seed(seed)
  model = model_cls(config_cls(**{**fields, **overrides})).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  model.save_pretrained(folder, safe_serialization=True)
  return model


def reference_hidden_states(model, waveform):
  """Every hidden state of the reference for a float32 waveform [B, N], as numpy [L+1, B, T, D].

  The last one is the model's output (`last_hidden_state`): HuBERT's pre-norm variant reports its
  last hidden state before the final LayerNorm, wav2vec2's after; jaxtalk's is the output for both.
  """
  with torch.no_grad():
    if isinstance(model, transformers.WhisperModel):
      extractor = transformers.WhisperFeatureExtractor(
        feature_size=model.config.num_mel_bins,
        chunk_length=model.config.max_source_positions * 2 * 160 // 16000,
      )
      mel = extractor(list(waveform), sampling_rate=16000, return_tensors="pt").input_features
      out = model.encoder(mel, output_hidden_states=True)
    else:
      out = model(torch.from_numpy(waveform), output_hidden_states=True)
  return torch.stack(out.hidden_states[:-1] + (out.last_hidden_state,)).numpy()
