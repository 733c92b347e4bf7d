"""Train jaxtalk's models.

  python train.py --config configs/demo.py --workdir runs/demo
  python train.py --config configs/gpu256.py --workdir runs/x --config.stage=motion --config.motion_train.num_steps=50000

`config.stage` picks what to train: "renderer" (stage 1: motion encoder + renderer), "motion"
(stage 2: audio encoder + motion transformer, on the frozen stage-1 encoder in the same workdir), or
"all" (both in turn). Each stage resumes from its latest checkpoint in `<workdir>/<stage>`; after the
motion stage the EMA weights of all models are exported as a sampling bundle to `<workdir>/bundle`.

Several hosts: start the same command on every host. On a Cloud TPU VM, under SLURM (`srun`) or
Open MPI (`mpirun`) the processes find each other; elsewhere give each process the coordinator
(`--coordinator_address=host0:1234 --num_processes=N --process_id=I`). Batch sizes in the config
are global; each host loads its rows of every batch.
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
_DISTRIBUTED = flags.DEFINE_enum(
  "distributed",
  "auto",
  ["auto", "on", "off"],
  "join a multi-process run: auto when the flags below are given or a cluster launcher (Cloud "
  "TPU, SLURM, Open MPI, JAX_COORDINATOR_ADDRESS) is detected; on: always, letting jax detect it",
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "host:port of process 0, for a run that no launcher describes"
)
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", None, "processes in the run (with the above)"
)
_PROCESS_ID = flags.DEFINE_integer(
  "process_id", None, "this process's index, from 0 (with the above)"
)
flags.mark_flags_as_required(["config", "workdir"])


def run(config, workdir) -> None:
  """Trains the stages the config names; importable so notebooks and tests call the same code."""
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
  if names[-1] == list(STAGES)[-1]:
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


def command(argv) -> None:
  """The command line: flags, then joining the other processes (before any device is used), then
  training."""
  from jaxtalk.parallel.distributed import ProcessSpec, join_run

  config, workdir = parse_flags(argv)
  join_run(
    ProcessSpec(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value), _DISTRIBUTED.value
  )
  run(config, workdir)


def main(argv=None) -> int:
  # Orbax reports every save and restore at INFO through absl; the progress lines are what matter.
  logging.set_verbosity(logging.ERROR)
  return run_command(command, sys.argv if argv is None else argv)


if __name__ == "__main__":
  sys.exit(main())
