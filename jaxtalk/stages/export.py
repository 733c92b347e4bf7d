"""Export a training run as a sampling bundle: the EMA weights every stage trained, and the config.

    python -m jaxtalk.stages.export --workdir runs/demo --out jaxtalk/assets/demo/model

`train.py` does this itself after the motion stage; this command re-exports a run, e.g. from an
earlier checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax

from jaxtalk.cli import argument_parser, run_command
from jaxtalk.config import config_from_dict
from jaxtalk.inference.bundle import save_bundle
from jaxtalk.parallel.distributed import wait_for_all
from jaxtalk.stages import STAGES
from jaxtalk.training.checkpoint import load_params, read_config


def stage_params(run_dir, config, stage_names=tuple(STAGES)) -> dict:
  """The EMA parameters of the latest checkpoints of `stage_names` in `run_dir`, by group."""
  params = {}
  for name in stage_names:
    stage = STAGES[name](config)
    groups = stage.models.abstract_params(stage.trains)
    params.update(load_params(stage.checkpoint_dir(run_dir), groups))
  return params


def stage_config(run_dir, stage_name: str = list(STAGES)[-1]):
  """The config a stage saved with its checkpoints in `run_dir`: it records a pretrained
  encoder's architecture, which the config file does not."""
  return config_from_dict(read_config(Path(run_dir) / stage_name))


def export_bundle(run_dir, out_dir, config) -> Path:
  """Writes the EMA parameters of every stage's latest checkpoint in `run_dir` to `out_dir`.

  In a multi-process run every process calls it: all read the checkpoints (a collective restore),
  process 0 alone writes, and each returns once the bundle is complete.
  """
  params = stage_params(run_dir, config)
  if jax.process_index() == 0:
    save_bundle(out_dir, config, params)
  wait_for_all("bundle exported")
  return Path(out_dir)


def export_command(args) -> None:
  print(f"wrote {export_bundle(args.workdir, args.out, stage_config(args.workdir))}")


def main(argv=None) -> int:
  parser = argument_parser("python -m jaxtalk.stages.export", __doc__)
  parser.add_argument(
    "--workdir", required=True, help="training workdir with renderer/ and motion/"
  )
  parser.add_argument("--out", required=True, help="folder to write the bundle to")
  return run_command(export_command, parser.parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
