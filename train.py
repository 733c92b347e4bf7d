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

from absl import app, flags, logging
from ml_collections import config_flags

from jaxtalk.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file (configs/*.py)")
_WORKDIR = flags.DEFINE_string("workdir", None, "where checkpoints, logs and the bundle go")
flags.mark_flags_as_required(["config", "workdir"])


def run(config, workdir) -> None:
  """Trains the stages the config names; importable so notebooks and tests call the same code."""
  import jax

  from jaxtalk.inference.bundle import export_bundle
  from jaxtalk.stages import STAGE_TRAINERS
  from jaxtalk.training.progress import say

  if config.stage not in (*STAGE_TRAINERS, "all"):
    raise UserError(
      f"config.stage is {config.stage!r}; use one of {', '.join(STAGE_TRAINERS)} or all"
    )
  stages = list(STAGE_TRAINERS) if config.stage == "all" else [config.stage]
  for stage in stages:
    say(f"=== stage: {stage} ===")
    STAGE_TRAINERS[stage](config, workdir)
  if "motion" in stages and jax.process_index() == 0:
    say(f"sampling bundle: {export_bundle(workdir, Path(workdir) / 'bundle', config)}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  # Orbax reports every save and restore at INFO through absl; the progress lines are what matter.
  logging.set_verbosity(logging.ERROR)
  try:
    run(_CONFIG.value, _WORKDIR.value)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:  # the loop saved a checkpoint before re-raising it
    sys.exit(130)


if __name__ == "__main__":
  app.run(main)
