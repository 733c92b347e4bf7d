"""Audio encoders: 16 kHz waveform in, features aligned to video frames out.

The interface every encoder (this small trainable one, or an imported pretrained speech model) keeps:
`encoder.apply(params, waveform [B, N]) -> [B, N // samples_per_frame, dim]`, feature i describing
video frame i. The motion transformer only sees this.

`audio.encoder` picks one: "mel" (below) or a pretrained "wav2vec2", "hubert" or "whisper" read
from the local Hugging Face folder `audio.checkpoint` (`jaxtalk.audio.pretrained`).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxtalk.audio.mel import log_mel
from jaxtalk.audio.pretrained.features import BACKBONE, PretrainedAudioEncoder
from jaxtalk.audio.pretrained.importer import read_checkpoint, read_spec
from jaxtalk.audio.pretrained.spec import Spec, spec_from_dict, spec_to_dict
from jaxtalk.errors import UserError

MEL_HOP = 160  # 10 ms at 16 kHz


class MelAudioEncoder(nn.Module):
  """Log-mel frames stacked per video frame, then residual temporal convolutions.

  At 16 kHz and 25 fps a video frame spans 640 samples = 4 mel hops; the 4 mel frames of each video
  frame are concatenated, so features are frame-aligned by construction, with no learned resampling.
  Each residual conv sees +-2 frames, so the receptive field is +-2*layers frames (+-240 ms at 3).
  """

  dim: int = 128
  n_mels: int = 80
  layers: int = 3
  sample_rate: int = 16000
  fps: int = 25
  dtype: jnp.dtype = jnp.float32

  @property
  def samples_per_frame(self) -> int:
    return self.sample_rate // self.fps

  @nn.compact
  def __call__(self, waveform):
    batch, samples = waveform.shape
    frames = samples // self.samples_per_frame
    mels_per_frame = self.samples_per_frame // MEL_HOP
    mel = log_mel(waveform, sample_rate=self.sample_rate, hop_length=MEL_HOP, n_mels=self.n_mels)
    x = mel[:, : frames * mels_per_frame].reshape(batch, frames, mels_per_frame * self.n_mels)
    conv_init = lambda axes: nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes)
    x = nn.Dense(self.dim, dtype=self.dtype, kernel_init=conv_init((None, "audio_embed")))(x)
    for i in range(self.layers):
      y = nn.LayerNorm(dtype=self.dtype)(x)
      y = nn.Conv(
        self.dim,
        (5,),
        padding="SAME",
        dtype=self.dtype,
        name=f"conv_{i}",
        kernel_init=conv_init((None, "conv_in", "audio_embed")),
      )(nn.gelu(y))
      x = x + y
    return nn.LayerNorm(dtype=self.dtype, name="out_norm")(x)


PRETRAINED = ("wav2vec2", "hubert", "whisper")


def make_audio_encoder(audio_cfg, data_cfg, dtype=jnp.float32) -> nn.Module:
  """The encoder a config names."""
  if audio_cfg.encoder == "mel":
    return MelAudioEncoder(
      dim=audio_cfg.dim,
      n_mels=audio_cfg.n_mels,
      layers=audio_cfg.layers,
      sample_rate=data_cfg.sample_rate,
      fps=data_cfg.fps,
      dtype=dtype,
    )
  return PretrainedAudioEncoder(
    spec=pretrained_spec(audio_cfg),
    dim=audio_cfg.dim,
    layer=audio_cfg.layer,
    weighted_layers=audio_cfg.weighted_layers,
    trainable=audio_cfg.trainable,
    segment_seconds=audio_cfg.segment_seconds,
    context_seconds=audio_cfg.context_seconds,
    sample_rate=data_cfg.sample_rate,
    fps=data_cfg.fps,
    dtype=dtype,
  )


def margin_frames(audio_cfg, data_cfg) -> int:
  """Frames of audio beyond each end of a segment the encoder should hear, so that edge frames are
  encoded as they would be mid-clip: the mel encoder's receptive field, or a pretrained encoder's
  `context_seconds` (its attention reaches the whole input)."""
  if audio_cfg.encoder == "mel":
    return 2 * audio_cfg.layers
  return round(audio_cfg.context_seconds * data_cfg.fps)


def is_frozen(audio_cfg, path: tuple[str, ...]) -> bool:
  """Whether the encoder parameter at `path` stays as imported: the backbone, unless audio.trainable."""
  return audio_cfg.encoder != "mel" and not audio_cfg.trainable and path[:1] == (BACKBONE,)


def pretrained_spec(audio_cfg) -> Spec:
  """The architecture a run recorded in audio.architecture, else the one in audio.checkpoint."""
  _check_encoder_name(audio_cfg)
  if audio_cfg.architecture:
    spec = spec_from_dict(audio_cfg.architecture)
  else:
    spec = read_spec(_checkpoint_folder(audio_cfg))
  return _checked_kind(audio_cfg, spec)


def import_pretrained(audio_cfg) -> dict | None:
  """The backbone params of audio.checkpoint (None for the mel encoder), recording its architecture
  in audio.architecture so that checkpoints and bundles of the run rebuild it without the folder."""
  if audio_cfg.encoder == "mel":
    return None
  _check_encoder_name(audio_cfg)
  spec, params = read_checkpoint(_checkpoint_folder(audio_cfg))
  recorded = audio_cfg.architecture
  if recorded and spec_from_dict(recorded) != spec:
    raise UserError(
      f"audio.checkpoint {audio_cfg.checkpoint} is not the model this run started with "
      f"(its architecture differs from audio.architecture)"
    )
  audio_cfg.architecture = spec_to_dict(_checked_kind(audio_cfg, spec))
  return params


def _check_encoder_name(audio_cfg):
  if audio_cfg.encoder not in PRETRAINED:
    raise UserError(
      f"unknown audio.encoder {audio_cfg.encoder!r}; use mel, {', '.join(PRETRAINED)}"
    )


def _checkpoint_folder(audio_cfg) -> str:
  if not audio_cfg.checkpoint:
    raise UserError(
      f"audio.encoder is {audio_cfg.encoder}: set audio.checkpoint to a local Hugging Face "
      f"folder (config.json + model.safetensors)"
    )
  return audio_cfg.checkpoint


def _checked_kind(audio_cfg, spec: Spec) -> Spec:
  if spec.kind != audio_cfg.encoder:
    raise UserError(
      f"audio.encoder is {audio_cfg.encoder} but {audio_cfg.checkpoint or 'audio.architecture'} "
      f"holds a {spec.kind} model"
    )
  return spec
