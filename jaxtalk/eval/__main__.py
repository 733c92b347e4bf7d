"""Score a model bundle on held-out SynthTalk clips with independent instruments.

  python -m jaxtalk.eval --checkpoint runs/demo/bundle --data data/synthtalk
                         [--clips 20] [--seed 0] [--reader DIR] [--syncnet DIR] [--json scores.json]

Four rows (ground-truth frames, ground-truth motion rendered, generated, audio-free) read by the
SynthTalk reader and the sync network; see `jaxtalk.eval.synthtalk_eval`. Prints a table; with
--json also writes every number (the file appears only once complete).
"""

from __future__ import annotations

import sys

from jaxtalk.cli import argument_parser, print_report, run_command
from jaxtalk.demo import DEMO_BUNDLE, SHIPPED_READER, SHIPPED_SYNCNET
from jaxtalk.errors import UserError


def parse_args(argv=None):
  p = argument_parser("python -m jaxtalk.eval", __doc__)
  p.add_argument(
    "--checkpoint",
    default=str(DEMO_BUNDLE),
    help="model bundle folder (a training run's bundle/; default: the bundled demo)",
  )
  p.add_argument("--data", required=True, help="SynthTalk folder with eval shards")
  p.add_argument("--clips", type=int, default=20, help="eval clips to score")
  p.add_argument("--seed", type=int, default=0, help="sampling noise seed")
  p.add_argument(
    "--reader",
    default=str(SHIPPED_READER),
    help="SynthTalk reader folder (python -m jaxtalk.eval.train_reader; default: the shipped one)",
  )
  p.add_argument(
    "--syncnet",
    default=str(SHIPPED_SYNCNET),
    help="sync network folder (python -m jaxtalk.eval.train_syncnet; default: the shipped one)",
  )
  p.add_argument("--json", help="also write the results to this JSON file")
  return p.parse_args(argv)


def run(args) -> dict:
  # Cheap checks first: a wrong path should fail in a second, before jax compiles anything.
  from jaxtalk.data.clips import shard_paths
  from jaxtalk.inference.bundle import load_bundle

  if args.clips < 1:
    raise UserError("--clips must be at least 1")
  config, params = load_bundle(args.checkpoint)
  shard_paths(args.data, "eval")

  from tqdm import tqdm

  from jaxtalk.eval.reader import Reader
  from jaxtalk.eval.syncnet import SyncNet
  from jaxtalk.eval.synthtalk_eval import evaluate, format_report
  from jaxtalk.inference.generate import TalkingHead

  reader = Reader.load(args.reader, image_size=config.data.image_size)
  syncnet = SyncNet.load(args.syncnet)
  with tqdm(total=args.clips, unit="clip", desc="evaluating", file=sys.stderr) as bar:
    results = evaluate(
      TalkingHead(config, params),
      args.data,
      reader,
      syncnet,
      num_clips=args.clips,
      seed=args.seed,
      progress=bar.update,
    )
  results = {
    "checkpoint": str(args.checkpoint),
    "data": str(args.data),
    "reader_folder": str(args.reader),
    "syncnet_folder": str(args.syncnet),
    **results,
  }
  print_report(format_report(results), results, args.json)
  return results


def main(argv=None) -> int:
  return run_command(run, parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
