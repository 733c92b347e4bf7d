"""Score a model bundle on held-out SynthTalk clips: reconstruction PSNR and lip sync.

  python -m jaxtalk.eval --checkpoint runs/demo/bundle --data data/synthtalk
                         [--clips 20] [--probe-clips 40] [--seed 0] [--json scores.json]

Prints a table; with --json also writes every number (the file appears only once complete).
"""

from __future__ import annotations

import sys

from jaxtalk.cli import argument_parser, print_report, run_command
from jaxtalk.demo import DEMO_BUNDLE
from jaxtalk.errors import UserError


def parse_args(argv=None):
  p = argument_parser("python -m jaxtalk.eval", __doc__)
  p.add_argument(
    "--checkpoint",
    default=str(DEMO_BUNDLE),
    help="model bundle folder (a training run's bundle/; default: the bundled demo)",
  )
  p.add_argument("--data", required=True, help="SynthTalk folder with train and eval shards")
  p.add_argument("--clips", type=int, default=20, help="eval clips to score")
  p.add_argument(
    "--probe-clips", type=int, default=40, help="train clips to fit the mouth probe on"
  )
  p.add_argument("--seed", type=int, default=0, help="sampling noise seed")
  p.add_argument("--json", help="also write the results to this JSON file")
  return p.parse_args(argv)


def run(args) -> dict:
  # Cheap checks first: a wrong path should fail in a second, before jax compiles anything.
  from jaxtalk.data.clips import shard_paths
  from jaxtalk.inference.bundle import load_bundle

  if args.clips < 1 or args.probe_clips < 1:
    raise UserError("--clips and --probe-clips must be at least 1")
  config, params = load_bundle(args.checkpoint)
  for split in ("train", "eval"):
    shard_paths(args.data, split)

  from tqdm import tqdm

  from jaxtalk.eval.synthtalk_eval import evaluate, format_report
  from jaxtalk.inference.generate import TalkingHead

  with tqdm(total=args.clips, unit="clip", desc="evaluating", file=sys.stderr) as bar:
    results = evaluate(
      TalkingHead(config, params),
      args.data,
      num_clips=args.clips,
      probe_clips=args.probe_clips,
      seed=args.seed,
      progress=bar.update,
    )
  results = {"checkpoint": str(args.checkpoint), "data": str(args.data), **results}
  print_report(format_report(results), results, args.json)
  return results


def main(argv=None) -> int:
  return run_command(run, parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
