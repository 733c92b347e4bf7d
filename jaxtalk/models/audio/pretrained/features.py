"""The audio encoder the motion model sees when a pretrained speech model does the listening.

waveform [B, N] -> (input normalisation) -> the pretrained encoder, in segments for long audio ->
one chosen hidden state, or a learned softmax-weighted sum of all of them -> resampled to video
frames -> LayerNorm + projection to `dim`. Parameters: {"backbone": the imported weights,
"layer_weights" (weighted sum only), "norm", "projection"}.

Frozen (the default), no gradient flows into the backbone: its outputs pass `stop_gradient`, so
the backward pass never runs through it, and `is_frozen` tells the optimizer to leave it alone.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtalk.models.audio.pretrained.backbones import make_backbone
from jaxtalk.models.audio.pretrained.chunking import encode_in_segments, resample_to_video_frames
from jaxtalk.models.audio.pretrained.layers import norm
from jaxtalk.models.audio.pretrained.spec import Spec, Wav2Vec2Spec
from jaxtalk.models.audio.pretrained.wav2vec2 import normalize_waveform
from jaxtalk.models.layers import dense, partitioned
from jaxtalk.timebase import FPS, SAMPLE_RATE, frames_of

BACKBONE = "backbone"


class PretrainedAudioEncoder(nn.Module):
  """waveform [B, N] at 16 kHz -> [B, N // SAMPLES_PER_FRAME, dim], feature i for video frame i."""

  spec: Spec
  dim: int
  # The hidden state to use (0: the input of the first layer, -1: the output), unless weighted.
  layer: int
  weighted_layers: bool
  trainable: bool
  segment_seconds: float  # wav2vec2 / HuBERT segment of long audio (Whisper's is always 30 s)
  context_seconds: float  # audio each segment sees beyond the frames it keeps, on each side
  dtype: jnp.dtype

  @property
  def context_frames(self) -> int:
    """Its attention reaches the whole input, so what it hears is what `context_seconds` gives it."""
    return round(self.context_seconds * FPS)

  def is_frozen(self, path: tuple[str, ...]) -> bool:
    """The imported backbone stays as imported, unless `trainable`."""
    return not self.trainable and path[:1] == (BACKBONE,)

  @property
  def layers(self) -> tuple[int, ...]:
    count = self.spec.num_hidden_states
    if self.weighted_layers:
      return tuple(range(count))
    if not -count <= self.layer < count:
      raise ValueError(
        f"audio.layer {self.layer} does not exist: the model has hidden states 0..{count - 1}"
      )
    return (self.layer % count,)

  @nn.compact
  def __call__(self, waveform: jax.Array) -> jax.Array:
    spec = self.spec
    if isinstance(spec, Wav2Vec2Spec) and spec.normalize_input:
      # Over the whole input, before it is cut into segments.
      waveform = normalize_waveform(waveform)
    frame_rate = SAMPLE_RATE / spec.frame_stride
    states = encode_in_segments(
      make_backbone(spec, self.dtype, name=BACKBONE),
      spec,
      waveform,
      self.layers,
      segment_frames=int(self.segment_seconds * frame_rate),
      context_frames=int(self.context_seconds * frame_rate),
    )
    if not self.trainable:
      states = jax.lax.stop_gradient(states)
    if self.weighted_layers:
      logits = self.param(
        "layer_weights", partitioned(nn.initializers.zeros_init(), (None,)), (len(self.layers),)
      )
      x = jnp.einsum("l,lbtd->btd", jax.nn.softmax(logits).astype(states.dtype), states)
    else:
      x = states[0]
    x = resample_to_video_frames(x, spec, frames_of(waveform.shape[-1]))
    x = norm(1e-5, dtype=self.dtype, name="norm")(x)
    return dense(self.dim, ("embed", "audio_embed"), dtype=self.dtype, name="projection")(x)
