"""Train jaxtalk's models.

  python train.py --config configs/demo.py --workdir runs/demo
  python train.py --config configs/gpu256.py --workdir runs/x --config.stage=motion --config.motion_train.num_steps=50000

`config.stage` picks what to train: "renderer" (stage 1: motion encoder + renderer), "motion"
(stage 2: audio encoder + motion transformer, on the frozen stage-1 encoder in the same workdir), or
"all" (both in turn). Each stage resumes from its latest checkpoint in `<workdir>/<stage>`; after the
motion stage the EMA weights of all models are exported as a sampling bundle to `<workdir>/bundle`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import flags, logging
from ml_collections import config_flags

from jaxtalk.cli import run_command
from jaxtalk.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file (configs/*.py)")
_WORKDIR = flags.DEFINE_string("workdir", None, "where checkpoints, logs and the bundle go")
flags.mark_flags_as_required(["config", "workdir"])


def run(config, workdir) -> None:
  """Trains the stages the config names; importable so notebooks and tests call the same code."""
  import jax

  from jaxtalk.models.audio.pretrained.importer import with_recorded_architecture
  from jaxtalk.stages import STAGES
  from jaxtalk.stages.export import export_bundle
  from jaxtalk.training.progress import say

  if config.stage not in (*STAGES, "all"):
    raise UserError(f"config.stage is {config.stage!r}; use one of {', '.join(STAGES)} or all")
  names = list(STAGES) if config.stage == "all" else [config.stage]
  # Checkpoints and the bundle then rebuild a pretrained audio encoder without its folder.
  config = with_recorded_architecture(config)
  for name in names:
    say(f"=== stage: {name} ===")
    STAGES[name](config).train(workdir)
  if names[-1] == list(STAGES)[-1] and jax.process_index() == 0:
    say(f"sampling bundle: {export_bundle(workdir, Path(workdir) / 'bundle', config)}")


def parse_flags(argv) -> tuple:
  """(config, workdir) from the command line; a UserError for any mistake in it.

  absl and ml_collections report mistakes as several exception types with multi-line messages
  (a config file that does not load, an override key that does not exist, a value of the wrong
  type); to the user each is one mistake, said on one line.
  """
  try:
    unparsed = flags.FLAGS(argv)
    # Our own copy; a config file that failed to load raises only when first used, here.
    config = _CONFIG.value.copy_and_resolve_references()
  except KeyError as e:  # an override of a key the config does not have
    lines = str(e.args[0]).splitlines()
    raise UserError(f"unknown config key {' '.join(lines)}") from None
  except OSError as e:  # the config file is missing or fails to run; the last line says which
    raise UserError(f"cannot load --config ({str(e).strip().splitlines()[-1].strip()})") from None
  except (flags.Error, AttributeError, TypeError, ValueError) as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    raise UserError(f"{lines[0]} ({lines[-1]})" if len(lines) > 1 else lines[0]) from None
  if len(unparsed) > 1:
    raise UserError(f"unexpected arguments: {' '.join(unparsed[1:])}")
  return config, _WORKDIR.value


def main(argv=None) -> int:
  # Orbax reports every save and restore at INFO through absl; the progress lines are what matter.
  logging.set_verbosity(logging.ERROR)
  return run_command(lambda argv: run(*parse_flags(argv)), sys.argv if argv is None else argv)


if __name__ == "__main__":
  sys.exit(main())
