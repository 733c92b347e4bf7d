"""Import a local Hugging Face speech-encoder folder (`config.json` + `model.safetensors`) into Flax.

Nothing is downloaded and nothing is unpickled: only safetensors files are read (through the
numpy API, one tensor at a time, so a Whisper checkpoint's decoder is never loaded). Every mistake
in the folder (missing files, an unknown architecture, a tensor of the wrong shape) is a
one-line `UserError` that names the file or tensor.

Tensors may sit under a head model's prefix (`wav2vec2.` in a CTC model, `model.` in Whisper's
generation model); the prefix is found from the first conv's weight.
"""

from __future__ import annotations

import json
from pathlib import Path

import flax
import jax
import numpy as np
from safetensors import safe_open

from jaxtalk.errors import UserError
from jaxtalk.models.audio.pretrained.backbones import make_backbone
from jaxtalk.models.audio.pretrained.spec import (
  Spec,
  Wav2Vec2Spec,
  WhisperSpec,
  spec_from_dict,
  spec_to_dict,
)
from jaxtalk.parallel.sharding import strip_partitioning
from jaxtalk.timebase import SAMPLE_RATE

SUPPORTED = ("wav2vec2", "hubert", "whisper")
WEIGHTS, WEIGHTS_INDEX = "model.safetensors", "model.safetensors.index.json"


def _read_json(path: Path) -> dict:
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise UserError(f"{path} cannot be read as JSON ({e})") from None


def _check_folder(folder: Path):
  if not folder.is_dir():
    raise UserError(
      f"audio checkpoint folder {folder} does not exist; set audio.checkpoint to a local "
      f"Hugging Face folder with config.json and model.safetensors"
    )
  if not (folder / "config.json").is_file():
    raise UserError(f"{folder} has no config.json: it is not a Hugging Face checkpoint folder")


def read_spec(folder) -> Spec:
  """The architecture described by `folder/config.json` (and `preprocessor_config.json` if present)."""
  folder = Path(folder)
  _check_folder(folder)
  config = _read_json(folder / "config.json")
  preprocessor_file = folder / "preprocessor_config.json"
  preprocessor = _read_json(preprocessor_file) if preprocessor_file.is_file() else {}
  kind = config.get("model_type")
  if kind not in SUPPORTED:
    raise UserError(
      f"{folder} holds a {kind!r} model; jaxtalk imports {', '.join(SUPPORTED)} speech encoders"
    )
  if preprocessor.get("sampling_rate", SAMPLE_RATE) != SAMPLE_RATE:
    raise UserError(
      f"{folder}: the model expects {preprocessor['sampling_rate']} Hz audio; jaxtalk feeds 16 kHz"
    )
  try:
    return (
      _whisper_spec(config, preprocessor)
      if kind == "whisper"
      else _wav2vec2_spec(config, preprocessor)
    )
  except (KeyError, TypeError, ValueError) as e:
    raise UserError(
      f"{folder / 'config.json'} is not a valid {kind} config ({type(e).__name__}: {e})"
    ) from None


def _wav2vec2_spec(config: dict, preprocessor: dict) -> Wav2Vec2Spec:
  for unsupported in ("adapter_attn_dim", "conv_pos_batch_norm"):
    if config.get(unsupported):
      raise ValueError(f"{unsupported} is set; jaxtalk supports the plain encoder only")
  norm = config.get("feat_extract_norm", "group")
  if norm not in ("group", "layer"):
    raise ValueError(f"feat_extract_norm must be 'group' or 'layer', not {norm!r}")
  return Wav2Vec2Spec(
    kind=config["model_type"],
    hidden_size=int(config["hidden_size"]),
    num_layers=int(config["num_hidden_layers"]),
    num_heads=int(config["num_attention_heads"]),
    intermediate_size=int(config["intermediate_size"]),
    conv_dim=tuple(map(int, config["conv_dim"])),
    conv_kernel=tuple(map(int, config["conv_kernel"])),
    conv_stride=tuple(map(int, config["conv_stride"])),
    conv_bias=bool(config.get("conv_bias", False)),
    feat_extract_norm=norm,
    stable_layer_norm=bool(config.get("do_stable_layer_norm", False)),
    num_conv_pos_embeddings=int(config.get("num_conv_pos_embeddings", 128)),
    num_conv_pos_embedding_groups=int(config.get("num_conv_pos_embedding_groups", 16)),
    layer_norm_eps=float(config.get("layer_norm_eps", 1e-5)),
    hidden_act=config.get("hidden_act", "gelu"),
    feat_extract_activation=config.get("feat_extract_activation", "gelu"),
    feature_projection_norm=bool(config.get("feat_proj_layer_norm", True)),
    # Without a preprocessor_config.json, follow the released models: "layer" checkpoints were
    # trained on normalised audio, "group" ones on raw audio.
    normalize_input=bool(preprocessor.get("do_normalize", norm == "layer")),
  )


def _whisper_spec(config: dict, preprocessor: dict) -> WhisperSpec:
  spec = WhisperSpec(
    d_model=int(config["d_model"]),
    num_layers=int(config["encoder_layers"]),
    num_heads=int(config["encoder_attention_heads"]),
    ffn_dim=int(config["encoder_ffn_dim"]),
    num_mel_bins=int(config["num_mel_bins"]),
    max_source_positions=int(config["max_source_positions"]),
    activation=config.get("activation_function", "gelu"),
    n_fft=int(preprocessor.get("n_fft", 400)),
    hop_length=int(preprocessor.get("hop_length", 160)),
  )
  if preprocessor.get("feature_size", spec.num_mel_bins) != spec.num_mel_bins:
    raise ValueError(
      f"preprocessor feature_size {preprocessor['feature_size']} != num_mel_bins {spec.num_mel_bins}"
    )
  return spec


def _wav2vec2_names(spec: Wav2Vec2Spec) -> dict[str, str]:
  """Flax parameter path -> reference module name (no ".weight"/".bias")."""
  names = {
    "feature_projection": "feature_projection.projection",
    "position_conv": "encoder.pos_conv_embed.conv",
    "encoder_norm": "encoder.layer_norm",
  }
  if spec.feature_projection_norm:
    names["feature_norm"] = "feature_projection.layer_norm"
  for i in range(len(spec.conv_dim)):
    names[f"conv_features/conv_{i}"] = f"feature_extractor.conv_layers.{i}.conv"
    if spec.feat_extract_norm == "layer" or i == 0:
      names[f"conv_features/norm_{i}"] = f"feature_extractor.conv_layers.{i}.layer_norm"
  for i in range(spec.num_layers):
    ref = f"encoder.layers.{i}"
    names.update(
      _layer_names(
        f"layer_{i}",
        ref,
        "attention",
        "layer_norm",
        "feed_forward.intermediate_dense",
        "feed_forward.output_dense",
      )
    )
  return names


def _whisper_names(spec: WhisperSpec) -> dict[str, str]:
  names = {"conv_1": "conv1", "conv_2": "conv2", "encoder_norm": "layer_norm"}
  for i in range(spec.num_layers):
    names.update(
      _layer_names(f"layer_{i}", f"layers.{i}", "self_attn", "self_attn_layer_norm", "fc1", "fc2")
    )
  return names


def _layer_names(ours, ref, attention, attention_norm, mlp_in, mlp_out):
  return {
    f"{ours}/attention/query": f"{ref}.{attention}.q_proj",
    f"{ours}/attention/key": f"{ref}.{attention}.k_proj",
    f"{ours}/attention/value": f"{ref}.{attention}.v_proj",
    f"{ours}/attention/out": f"{ref}.{attention}.out_proj",
    f"{ours}/attention_norm": f"{ref}.{attention_norm}",
    f"{ours}/mlp_in": f"{ref}.{mlp_in}",
    f"{ours}/mlp_out": f"{ref}.{mlp_out}",
    f"{ours}/mlp_norm": f"{ref}.final_layer_norm",
  }


class _Tensors:
  """Lazy reader over the folder's safetensors file(s), keyed by tensor name."""

  def __init__(self, folder: Path):
    if (folder / WEIGHTS_INDEX).is_file():
      index = _read_json(folder / WEIGHTS_INDEX)
      self.files = {name: folder / file for name, file in index.get("weight_map", {}).items()}
    elif (folder / WEIGHTS).is_file():
      with safe_open(folder / WEIGHTS, framework="np") as f:
        self.files = {name: folder / WEIGHTS for name in f.keys()}  # noqa: SIM118 (a safetensors handle, not a dict)
    elif any(folder.glob("*.bin")):
      raise UserError(
        f"{folder} holds PyTorch .bin weights, which jaxtalk does not unpickle; convert them "
        f"once where transformers is installed: AutoModel.from_pretrained('{folder}')"
        f".save_pretrained('{folder}', safe_serialization=True)"
      )
    else:
      raise UserError(f"{folder} has no {WEIGHTS}")
    self.folder = folder

  def find_prefix(self, suffix: str) -> str:
    for name in self.files:
      if name.endswith(suffix):
        return name[: -len(suffix)]
    raise UserError(
      f"{self.folder} has no tensor *{suffix}: the weights do not belong to its config.json"
    )

  def __contains__(self, name: str) -> bool:
    return name in self.files

  def __getitem__(self, name: str) -> np.ndarray:
    if name not in self.files:
      raise UserError(
        f"{self.folder} lacks tensor {name}: the checkpoint is incomplete or its config.json "
        f"describes another model"
      )
    with safe_open(self.files[name], framework="np") as f:
      return np.asarray(f.get_tensor(name), np.float32)


def _position_conv_weight(tensors: _Tensors, module: str) -> np.ndarray:
  """The positional conv's kernel, folding weight normalisation (norm over all but the kernel axis)."""
  for magnitude, direction in (
    (f"{module}.parametrizations.weight.original0", f"{module}.parametrizations.weight.original1"),
    (f"{module}.weight_g", f"{module}.weight_v"),
  ):
    if magnitude in tensors:
      g, v = tensors[magnitude], tensors[direction]
      return g * v / np.sqrt(np.sum(np.square(v), axis=(0, 1), keepdims=True))
  return tensors[f"{module}.weight"]


def _converted(tensors: _Tensors, prefix: str, ours: str, ref: str, leaf: str) -> np.ndarray:
  """One of our leaves (kernel / bias / scale) from the reference module `ref`."""
  name = f"{prefix}{ref}"
  if leaf == "bias":
    return tensors[f"{name}.bias"]
  if ours == "position_conv":
    weight = _position_conv_weight(tensors, name)
  else:
    weight = tensors[f"{name}.weight"]
  if leaf == "scale":
    return weight
  return weight.transpose(2, 1, 0) if weight.ndim == 3 else weight.T  # [out, in(, k)] -> ours


def read_checkpoint(folder) -> tuple[Spec, dict]:
  """(spec, backbone params as a nested dict of float32 numpy arrays) from a local HF folder."""
  folder = Path(folder)
  spec = read_spec(folder)
  tensors = _Tensors(folder)
  if isinstance(spec, WhisperSpec):
    prefix, names = tensors.find_prefix("conv1.weight"), _whisper_names(spec)
  else:
    prefix, names = (
      tensors.find_prefix("feature_extractor.conv_layers.0.conv.weight"),
      _wav2vec2_names(spec),
    )
  expected = flax.traverse_util.flatten_dict(abstract_backbone_params(spec), sep="/")
  params = {}
  for path, leaf in expected.items():
    module, _, leaf_name = path.rpartition("/")
    if path == "positions":
      value = tensors[f"{prefix}embed_positions.weight"]
    else:
      value = _converted(tensors, prefix, module, names[module], leaf_name)
    if value.shape != leaf.shape:
      raise UserError(
        f"{folder}: tensor for {names.get(module, path)}.{leaf_name} has shape {value.shape}, "
        f"config.json implies {leaf.shape}"
      )
    params[path] = value
  return spec, flax.traverse_util.unflatten_dict(params, sep="/")


def abstract_backbone_params(spec: Spec) -> dict:
  """ShapeDtypeStructs of the encoder's parameters, without computing anything."""
  backbone = make_backbone(spec)
  samples = spec.segment_samples if isinstance(spec, WhisperSpec) else spec.samples_for_frames(1)
  abstract = jax.eval_shape(
    backbone.init, jax.random.key(0), jax.ShapeDtypeStruct((1, samples), np.float32)
  )
  return strip_partitioning(abstract["params"])


# --------------------------------------------------------------------- from the run's config
# `audio.encoder` names the kind, `audio.checkpoint` the folder, and `audio.architecture` records
# the spec once a run has read it, so its checkpoints and bundles rebuild the encoder without the
# folder.


def configured_spec(audio_cfg) -> Spec:
  """The architecture a run recorded in audio.architecture, else the one in audio.checkpoint."""
  _check_encoder_name(audio_cfg)
  spec = (
    spec_from_dict(audio_cfg.architecture)
    if audio_cfg.architecture
    else read_spec(_checkpoint_folder(audio_cfg))
  )
  return _checked_kind(audio_cfg, spec)


def with_recorded_architecture(config):
  """A copy of `config` whose audio.architecture holds the spec of audio.checkpoint (unchanged for
  the mel encoder, or when already recorded and the folder still holds that model)."""
  if config.audio.encoder == "mel":
    return config
  spec = _checked_kind(config.audio, read_spec(_checkpoint_folder(config.audio)))
  if config.audio.architecture and spec_from_dict(config.audio.architecture) != spec:
    raise UserError(
      f"audio.checkpoint {config.audio.checkpoint} is not the model this run started with "
      f"(its architecture differs from audio.architecture)"
    )
  config = config.copy_and_resolve_references()
  config.audio.architecture = spec_to_dict(spec)
  return config


def import_backbone(audio_cfg) -> dict:
  """The weights of audio.checkpoint, checked to be the architecture the config recorded."""
  spec, params = read_checkpoint(_checkpoint_folder(audio_cfg))
  if spec != configured_spec(audio_cfg):
    raise UserError(
      f"audio.checkpoint {audio_cfg.checkpoint} is not the model this run started with "
      f"(its architecture differs from audio.architecture)"
    )
  return params


def _check_encoder_name(audio_cfg):
  if audio_cfg.encoder not in SUPPORTED:
    raise UserError(f"unknown audio.encoder {audio_cfg.encoder!r}; use mel, {', '.join(SUPPORTED)}")


def _checkpoint_folder(audio_cfg) -> str:
  _check_encoder_name(audio_cfg)
  if not audio_cfg.checkpoint:
    raise UserError(
      f"audio.encoder is {audio_cfg.encoder}: set audio.checkpoint to a local Hugging Face "
      f"folder (config.json + model.safetensors)"
    )
  return audio_cfg.checkpoint


def _checked_kind(audio_cfg, spec: Spec) -> Spec:
  if spec.kind != audio_cfg.encoder:
    raise UserError(
      f"audio.encoder is {audio_cfg.encoder} but "
      f"{audio_cfg.checkpoint or 'audio.architecture'} holds a {spec.kind} model"
    )
  return spec
