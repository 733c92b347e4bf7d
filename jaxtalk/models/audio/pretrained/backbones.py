"""The Flax encoder for a spec."""

import jax.numpy as jnp

from jaxtalk.models.audio.pretrained.spec import Spec, WhisperSpec
from jaxtalk.models.audio.pretrained.wav2vec2 import Wav2Vec2Encoder
from jaxtalk.models.audio.pretrained.whisper import WhisperEncoder


def make_backbone(spec: Spec, dtype=jnp.float32, name: str | None = None):
  """`module.apply(params, waveform) -> tuple of hidden states`; see the two encoders."""
  cls = WhisperEncoder if isinstance(spec, WhisperSpec) else Wav2Vec2Encoder
  return cls(spec, dtype, name=name)
