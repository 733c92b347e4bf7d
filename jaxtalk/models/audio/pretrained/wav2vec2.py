"""wav2vec2 and HuBERT encoders (one architecture, two training recipes), layer for layer as the reference.

waveform -> strided conv stack (GroupNorm after the first conv for "group" checkpoints, LayerNorm
after every conv for "layer" ones) -> LayerNorm + projection to the model width -> plus a grouped
positional convolution over +-64 frames -> transformer layers, post-norm ("base") or pre-norm
("stable layer norm", the large lv60 variants). The positional convolution is weight-normalised in
the checkpoint; the importer folds it into a plain kernel, so fine-tuning trains it as one.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtalk.models.audio.pretrained.layers import EncoderLayer, activation, conv1d, norm
from jaxtalk.models.audio.pretrained.spec import Wav2Vec2Spec
from jaxtalk.models.layers import dense, partitioned

CONV_NORM_EPS = 1e-5  # the conv stack's norms use PyTorch's default, not config.layer_norm_eps
INPUT_NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor's zero-mean unit-variance normalisation


def normalize_waveform(waveform: jax.Array) -> jax.Array:
  """Zero mean, unit variance per example, over the whole input (the feature extractor's step)."""
  mean = jnp.mean(waveform, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(waveform - mean), axis=-1, keepdims=True)
  return (waveform - mean) / jnp.sqrt(var + INPUT_NORM_EPS)


class ConvFeatures(nn.Module):
  """The conv stack: waveform [B, N] -> [B, spec.num_frames(N), conv_dim[-1]]."""

  spec: Wav2Vec2Spec
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, waveform: jax.Array) -> jax.Array:
    spec, act = self.spec, activation(self.spec.feat_extract_activation)
    h = waveform[..., None].astype(self.dtype)
    for i, (dim, kernel, stride) in enumerate(
      zip(spec.conv_dim, spec.conv_kernel, spec.conv_stride)
    ):
      h = conv1d(
        dim, kernel, stride=stride, use_bias=spec.conv_bias, dtype=self.dtype, name=f"conv_{i}"
      )(h)
      if spec.feat_extract_norm == "layer":
        h = nn.LayerNorm(
          epsilon=CONV_NORM_EPS,
          use_fast_variance=False,
          dtype=self.dtype,
          name=f"norm_{i}",
          scale_init=partitioned(nn.initializers.ones_init(), ("conv_out",)),
          bias_init=partitioned(nn.initializers.zeros_init(), ("conv_out",)),
        )(h)
      elif i == 0:
        # One group per channel: each channel is normalised over the whole input's time axis.
        h = nn.GroupNorm(
          num_groups=dim,
          epsilon=CONV_NORM_EPS,
          use_fast_variance=False,
          dtype=self.dtype,
          name="norm_0",
          scale_init=partitioned(nn.initializers.ones_init(), ("conv_out",)),
          bias_init=partitioned(nn.initializers.zeros_init(), ("conv_out",)),
        )(h)
      h = act(h)
    return h


class Wav2Vec2Encoder(nn.Module):
  """waveform [B, N] (already normalised if the spec says so) -> every hidden state.

  Returns num_layers + 1 arrays [B, T, hidden_size], as the reference's `hidden_states`: the input
  of the first layer, then each layer's output; for pre-norm models the last one after the final
  LayerNorm.
  """

  spec: Wav2Vec2Spec
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, waveform: jax.Array) -> tuple[jax.Array, ...]:
    spec = self.spec
    h = ConvFeatures(spec, self.dtype, name="conv_features")(waveform)
    if spec.feature_projection_norm:
      h = norm(spec.layer_norm_eps, dtype=self.dtype, name="feature_norm")(h)
    h = dense(spec.hidden_size, ("conv_in", "embed"), dtype=self.dtype, name="feature_projection")(
      h
    )
    kernel = spec.num_conv_pos_embeddings
    # PyTorch pads kernel // 2 on both sides and drops the last frame for even kernels.
    position = conv1d(
      spec.hidden_size,
      kernel,
      padding=[(kernel // 2, (kernel - 1) // 2)],
      groups=spec.num_conv_pos_embedding_groups,
      dtype=self.dtype,
      name="position_conv",
    )(h)
    h = h + activation(spec.feat_extract_activation)(position)
    final_norm = norm(spec.layer_norm_eps, dtype=self.dtype, name="encoder_norm")
    if not spec.stable_layer_norm:
      h = final_norm(h)
    states = [h]
    for i in range(spec.num_layers):
      h = EncoderLayer(
        spec.num_heads,
        spec.intermediate_size,
        spec.layer_norm_eps,
        spec.hidden_act,
        pre_norm=spec.stable_layer_norm,
        dtype=self.dtype,
        name=f"layer_{i}",
      )(h)
      states.append(h)
    if spec.stable_layer_norm:
      states[-1] = final_norm(h)
    return tuple(states)
