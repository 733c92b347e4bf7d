"""Inference bundles: the EMA weights of all four models plus the config, in one small folder.

A training workdir holds full orbax checkpoints (optimizer state, several steps) for each stage;
sampling needs only the EMA parameters. `export_bundle` writes `config.json` and
`params.msgpack` (a flax-serialised dict: motion_encoder, renderer, audio_encoder, motion), about
a quarter of a checkpoint's size; this is what ships as the demo model.

    python -m jaxtalk.inference.bundle --workdir runs/demo --out jaxtalk/assets/demo/model
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import flax.serialization
import jax
import ml_collections
import numpy as np

from jaxtalk.errors import UserError
from jaxtalk.media import atomic_output_path
from jaxtalk.parallel.sharding import strip_partitioning
from jaxtalk.stages import motion_stage, renderer_stage
from jaxtalk.stages.common import stage_dir
from jaxtalk.training.checkpoint import load_params

CONFIG_FILE, PARAMS_FILE = "config.json", "params.msgpack"
BUNDLE_VERSION = 1


def abstract_params(config):
  """Shapes of every model's parameters for this config, computed without allocating them."""
  stage1 = jax.eval_shape(renderer_stage.init_fn(config), jax.random.key(0))
  stage2 = jax.eval_shape(motion_stage.init_fn(config), jax.random.key(0))
  return strip_partitioning({**stage1, **stage2})


def export_bundle(workdir, out_dir, config) -> Path:
  """Writes the EMA parameters of both finished stages in `workdir` as a bundle in `out_dir`."""
  shapes = abstract_params(config)
  stage1 = load_params(
    stage_dir(workdir, "renderer"), {k: shapes[k] for k in ("motion_encoder", "renderer")}
  )
  stage2 = load_params(
    stage_dir(workdir, "motion"), {k: shapes[k] for k in ("audio_encoder", "motion")}
  )
  return save_bundle(out_dir, config, {**stage1, **stage2})


def save_bundle(out_dir, config, params) -> Path:
  """Writes `params` (motion_encoder, renderer, audio_encoder, motion) and `config` as a bundle."""
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  _write_atomic(out_dir / PARAMS_FILE, flax.serialization.msgpack_serialize(jax.device_get(params)))
  meta = {"bundle_version": BUNDLE_VERSION, "config": config.to_dict()}
  _write_atomic(out_dir / CONFIG_FILE, json.dumps(meta, indent=1, default=list).encode())
  return out_dir


def load_bundle(bundle_dir):
  """(config, params) of a bundle, with a one-line UserError for anything that is not right."""
  bundle_dir = Path(bundle_dir)
  if not bundle_dir.is_dir():
    raise UserError(
      f"checkpoint folder {bundle_dir} does not exist; give --checkpoint a folder "
      f"made by train.py (its bundle/ subfolder) or python -m jaxtalk.inference.bundle"
    )
  for name in (CONFIG_FILE, PARAMS_FILE):
    if not (bundle_dir / name).is_file():
      raise UserError(
        f"{bundle_dir} is not a jaxtalk model bundle (no {name}); export one with "
        f"python -m jaxtalk.inference.bundle --workdir RUN --out DIR"
      )
  try:
    meta = json.loads((bundle_dir / CONFIG_FILE).read_text())
    config = ml_collections.ConfigDict(meta["config"])
  except (ValueError, KeyError, TypeError) as e:
    raise UserError(f"{bundle_dir / CONFIG_FILE} is corrupt ({e}); re-export the bundle") from None
  if meta.get("bundle_version") != BUNDLE_VERSION:
    raise UserError(
      f"{bundle_dir} is bundle version {meta.get('bundle_version')}, this jaxtalk reads "
      f"version {BUNDLE_VERSION}; re-export it with this version"
    )
  try:
    stored = flax.serialization.msgpack_restore((bundle_dir / PARAMS_FILE).read_bytes())
  except Exception as e:  # msgpack raises several unrelated types for truncated input
    raise UserError(
      f"{bundle_dir / PARAMS_FILE} is corrupt or truncated ({type(e).__name__}); "
      f"re-export or re-download the bundle"
    ) from None
  return config, _checked_params(stored, abstract_params(config), bundle_dir)


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


def _write_atomic(path: Path, data: bytes):
  with atomic_output_path(str(path)) as tmp:
    Path(tmp).write_bytes(data)


def main(argv=None):
  from jaxtalk.training.checkpoint import read_config

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--workdir", required=True, help="training workdir with renderer/ and motion/"
  )
  parser.add_argument("--out", required=True, help="folder to write the bundle to")
  args = parser.parse_args(argv)
  try:
    config = ml_collections.ConfigDict(read_config(stage_dir(args.workdir, "motion")))
    print(f"wrote {export_bundle(args.workdir, args.out, config)}")
  except UserError as e:
    raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
  main()
