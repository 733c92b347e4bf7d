"""Sampling bundles: the EMA weights of all four models plus the config, in one small folder.

A bundle is `config.json` (the experiment config and the format version) and `params.msgpack` (a
flax-serialised dict of the parameter groups motion_encoder, renderer, audio_encoder, motion),
about a quarter of a training checkpoint's size; this is what ships as the demo model. Training
writes one at the end of a run (`jaxtalk.stages.export`); sampling reads it without any of the
training code.

Version 2: the config holds exactly the keys of this jaxtalk's base config (version 1 named the
sampler's chunks in flight, the attention lookback and the audio radius "window" and still carried
the fixed frame and sample rates).

Version 3: attention projections keep their heads axes (query/key/value kernels
[in, heads, head_dim], output kernels [heads, head_dim, out]; the motion blocks' fused qkv
[dim, 3, heads, head_dim]), where version 2 stored them flat; the axis rules name activations
apart from weights.

Version 4: the motion transformer's blocks are stacked under motion/blocks, one leading axis of
`depth` (`motion.scan_layers`), where version 3 had motion/block_0, motion/block_1, ...; new config
keys motion.scan_layers, motion.remat and renderer.remat.
"""

from __future__ import annotations

import json
from pathlib import Path

import flax.serialization
import jax
import numpy as np

from jaxtalk.config import config_from_dict
from jaxtalk.errors import UserError
from jaxtalk.media import write_bytes, write_json
from jaxtalk.models.factory import Models

CONFIG_FILE, PARAMS_FILE = "config.json", "params.msgpack"
BUNDLE_VERSION = 4


def save_bundle(out_dir, config, params) -> Path:
  """Writes `params` (motion_encoder, renderer, audio_encoder, motion) and `config` as a bundle."""
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  write_bytes(out_dir / PARAMS_FILE, flax.serialization.msgpack_serialize(jax.device_get(params)))
  meta = {"bundle_version": BUNDLE_VERSION, "config": config.to_dict()}
  write_json(out_dir / CONFIG_FILE, meta)
  return out_dir


def load_bundle(bundle_dir):
  """(config, params) of a bundle, with a one-line UserError for anything that is not right."""
  bundle_dir = Path(bundle_dir)
  if not bundle_dir.is_dir():
    raise UserError(
      f"checkpoint folder {bundle_dir} does not exist; give --checkpoint a folder "
      f"made by train.py (its bundle/ subfolder) or python -m jaxtalk.stages.export"
    )
  for name in (CONFIG_FILE, PARAMS_FILE):
    if not (bundle_dir / name).is_file():
      raise UserError(
        f"{bundle_dir} is not a jaxtalk model bundle (no {name}); export one with "
        f"python -m jaxtalk.stages.export --workdir RUN --out DIR"
      )
  try:
    meta = json.loads((bundle_dir / CONFIG_FILE).read_text())
    version, stored_config = meta.get("bundle_version"), meta["config"]
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise UserError(f"{bundle_dir / CONFIG_FILE} is corrupt ({e}); re-export the bundle") from None
  if version != BUNDLE_VERSION:
    raise UserError(
      f"{bundle_dir} is bundle version {version}, this jaxtalk reads version "
      f"{BUNDLE_VERSION}; re-export it with this version"
    )
  try:
    config = config_from_dict(stored_config)
  except UserError as e:
    raise UserError(f"{bundle_dir} was made by another version of jaxtalk: its {e}") from None
  try:
    stored = flax.serialization.msgpack_restore((bundle_dir / PARAMS_FILE).read_bytes())
  except Exception as e:  # msgpack raises several unrelated types for truncated input
    raise UserError(
      f"{bundle_dir / PARAMS_FILE} is corrupt or truncated ({type(e).__name__}); "
      f"re-export or re-download the bundle"
    ) from None
  expected = Models.from_config(config).abstract_params()
  return config, _checked_params(stored, expected, bundle_dir)


def _checked_params(stored, expected, bundle_dir):
  """The stored tree, after checking it has exactly the parameters the config's models need."""
  stored_flat = flax.traverse_util.flatten_dict(stored, sep="/")
  expected_flat = flax.traverse_util.flatten_dict(expected, sep="/")
  for name, leaf in expected_flat.items():
    shape = tuple(leaf.shape)
    if name not in stored_flat:
      raise UserError(f"{bundle_dir} lacks parameter {name}: it was made for another model config")
    if tuple(np.shape(stored_flat[name])) != shape:
      raise UserError(
        f"{bundle_dir}: parameter {name} has shape {np.shape(stored_flat[name])}, the "
        f"config expects {shape}; the bundle and its config.json do not match"
      )
  extra = sorted(set(stored_flat) - set(expected_flat))
  if extra:
    raise UserError(
      f"{bundle_dir} has parameters the model does not use ({extra[0]}, ...): it was "
      f"made by another version of jaxtalk"
    )
  return flax.traverse_util.unflatten_dict(
    {k: np.asarray(v) for k, v in stored_flat.items()}, sep="/"
  )
