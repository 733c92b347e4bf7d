"""The audio encoder the motion model sees when a pretrained speech model does the listening.

waveform [B, N] -> (input normalisation) -> the pretrained encoder, in segments for long audio ->
one chosen hidden state, or a learned softmax-weighted sum of all of them -> resampled to video
frames -> LayerNorm + projection to `dim`. Parameters: {"backbone": the imported weights,
"layer_weights" (weighted sum only), "norm", "projection"}.

Frozen (the default), no gradient flows into the backbone: its outputs pass `stop_gradient`, so
the backward pass never runs through it, and the stage tells the optimizer to leave it alone
(`jaxtalk.audio.encoder.is_frozen`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtalk.audio.pretrained.backbones import make_backbone
from jaxtalk.audio.pretrained.chunking import encode_in_segments, resample_to_video_frames
from jaxtalk.audio.pretrained.layers import norm
from jaxtalk.audio.pretrained.spec import Spec, Wav2Vec2Spec
from jaxtalk.audio.pretrained.wav2vec2 import normalize_waveform
from jaxtalk.models.layers import dense, partitioned

BACKBONE = "backbone"


class PretrainedAudioEncoder(nn.Module):
  """waveform [B, N] at 16 kHz -> [B, N // samples_per_frame, dim], feature i for video frame i."""

  spec: Spec
  dim: int
  layer: int = (
    -1
  )  # hidden state to use (0 = input of the first layer, -1 = output), unless weighted
  weighted_layers: bool = False
  trainable: bool = False
  segment_seconds: float = 20.0  # wav2vec2 / HuBERT segment for long audio (Whisper: always 30 s)
  context_seconds: float = 1.0  # audio each segment sees beyond the frames it keeps, on each side
  sample_rate: int = 16000
  fps: int = 25
  dtype: jnp.dtype = jnp.float32

  @property
  def samples_per_frame(self) -> int:
    return self.sample_rate // self.fps

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
      waveform = normalize_waveform(
        waveform
      )  # over the whole input, before it is cut into segments
    frame_rate = self.sample_rate / spec.frame_stride
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
    x = resample_to_video_frames(
      x, spec, waveform.shape[-1] // self.samples_per_frame, self.samples_per_frame
    )
    x = norm(1e-5, dtype=self.dtype, name="norm")(x)
    return dense(self.dim, ("embed", "audio_embed"), dtype=self.dtype, name="projection")(x)
