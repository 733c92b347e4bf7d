"""The architecture of an imported speech encoder: what `config.json` says, in the fields we use.

A spec is small and JSON-able, so a training run stores it in `config.audio.architecture`; a
sampling bundle then rebuilds the encoder without the Hugging Face folder it was imported from.
Specs also know their frame geometry (how many encoder frames N samples give, and where each
frame is centred), which chunking and resampling to video frames need.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Wav2Vec2Spec:
  """wav2vec2 and HuBERT: a strided conv stack on the waveform, then a transformer encoder."""

  kind: str  # "wav2vec2" or "hubert": same architecture, different checkpoints
  hidden_size: int
  num_layers: int
  num_heads: int
  intermediate_size: int
  conv_dim: tuple[int, ...]
  conv_kernel: tuple[int, ...]
  conv_stride: tuple[int, ...]
  conv_bias: bool
  feat_extract_norm: (
    str  # "group": GroupNorm after the first conv (base); "layer": LayerNorm after each
  )
  stable_layer_norm: bool  # pre-norm transformer layers (the large "lv60" variants)
  num_conv_pos_embeddings: int
  num_conv_pos_embedding_groups: int
  layer_norm_eps: float
  hidden_act: str
  feat_extract_activation: str
  feature_projection_norm: bool  # LayerNorm before the feature projection (HuBERT may omit it)
  normalize_input: (
    bool  # zero-mean unit-variance waveform, as the checkpoint's feature extractor does
  )

  @property
  def num_hidden_states(self) -> int:
    return self.num_layers + 1

  @property
  def frame_stride(self) -> int:
    return math.prod(self.conv_stride)

  @property
  def receptive_field(self) -> int:
    """Samples one frame sees through the conv stack (400 for the released models)."""
    span, step = 1, 1
    for kernel, stride in zip(self.conv_kernel, self.conv_stride):
      span += (kernel - 1) * step
      step *= stride
    return span

  @property
  def frame_centre(self) -> float:
    """Sample at the centre of frame 0; frame j is centred `j * frame_stride` samples later."""
    return (self.receptive_field - 1) / 2

  def num_frames(self, num_samples: int) -> int:
    for kernel, stride in zip(self.conv_kernel, self.conv_stride):
      num_samples = (num_samples - kernel) // stride + 1
    return max(num_samples, 0)

  def samples_for_frames(self, num_frames: int) -> int:
    """The fewest samples that give `num_frames` frames."""
    return (num_frames - 1) * self.frame_stride + self.receptive_field


@dataclasses.dataclass(frozen=True)
class WhisperSpec:
  """Whisper's encoder: log-mel of a fixed 30-second segment, two convs, a pre-norm transformer."""

  d_model: int
  num_layers: int
  num_heads: int
  ffn_dim: int
  num_mel_bins: int
  max_source_positions: int
  activation: str
  n_fft: int = 400
  hop_length: int = 160
  kind: str = "whisper"

  @property
  def num_hidden_states(self) -> int:
    return self.num_layers + 1

  @property
  def frame_stride(self) -> int:
    return 2 * self.hop_length  # conv2 has stride 2 over mel frames

  @property
  def frame_centre(self) -> float:
    return 0.0  # mel frame k is centred on sample k * hop; encoder frame j on mel frame 2j

  @property
  def segment_samples(self) -> int:
    """Samples of the one input length Whisper was trained on (30 s for the released models)."""
    return 2 * self.max_source_positions * self.hop_length

  def num_frames(self, num_samples: int) -> int:
    return -(-(num_samples // self.hop_length) // 2)


Spec = Wav2Vec2Spec | WhisperSpec


def spec_to_dict(spec: Spec) -> dict:
  return dataclasses.asdict(spec)


def spec_from_dict(fields) -> Spec:
  """Inverse of `spec_to_dict`; also takes the lists a JSON round trip makes of tuples."""
  fields = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(fields).items()}
  cls = WhisperSpec if fields.get("kind") == "whisper" else Wav2Vec2Spec
  return cls(**fields)
