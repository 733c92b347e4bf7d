"""Whisper's audio encoder, layer for layer as the reference.

One segment of exactly `spec.segment_samples` samples (30 s) -> log-mel -> conv (k3) and strided conv (k3,
stride 2), each with GELU -> plus learned absolute positions -> pre-norm transformer layers ->
final LayerNorm. Absolute positions are why the input length is fixed: shorter audio is padded
with silence to the segment, as Whisper's feature extractor pads it.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtalk.models.audio.pretrained.layers import EncoderLayer, activation, conv1d, norm
from jaxtalk.models.audio.pretrained.spec import WhisperSpec
from jaxtalk.models.audio.pretrained.whisper_mel import whisper_log_mel
from jaxtalk.models.layers import partitioned

LAYER_NORM_EPS = 1e-5  # Whisper's LayerNorms use PyTorch's default


class WhisperEncoder(nn.Module):
  """waveform [B, spec.segment_samples] -> num_layers + 1 hidden states [B, segment // 320, d_model].

  As the reference's `hidden_states`: the input of the first layer, each layer's output, the last
  one after the final LayerNorm.
  """

  spec: WhisperSpec
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, waveform: jax.Array) -> tuple[jax.Array, ...]:
    spec, act = self.spec, activation(self.spec.activation)
    if waveform.shape[-1] != spec.segment_samples:
      raise ValueError(
        f"Whisper encodes segments of exactly {spec.segment_samples} samples, got {waveform.shape[-1]}"
      )
    mel = whisper_log_mel(
      waveform, n_mels=spec.num_mel_bins, n_fft=spec.n_fft, hop_length=spec.hop_length
    )
    h = act(
      conv1d(spec.d_model, 3, padding=[(1, 1)], dtype=self.dtype, name="conv_1")(
        mel.astype(self.dtype)
      )
    )
    h = act(conv1d(spec.d_model, 3, stride=2, padding=[(1, 1)], dtype=self.dtype, name="conv_2")(h))
    positions = self.param(
      "positions",
      partitioned(nn.initializers.normal(0.02), (None, "embed")),
      (spec.max_source_positions, spec.d_model),
    )
    h = h + positions.astype(self.dtype)
    states = [h]
    for i in range(spec.num_layers):
      h = EncoderLayer(
        spec.num_heads,
        spec.ffn_dim,
        LAYER_NORM_EPS,
        spec.activation,
        pre_norm=True,
        key_bias=False,
        dtype=self.dtype,
        name=f"layer_{i}",
      )(h)
      states.append(h)
    states[-1] = norm(LAYER_NORM_EPS, dtype=self.dtype, name="encoder_norm")(h)
    return tuple(states)
