"""Score a model bundle on held-out SynthTalk clips with independent instruments.

  python -m jaxtalk.eval --checkpoint runs/demo/bundle --data data/synthtalk
                         [--clips 20] [--probe-clips 200] [--drift-minutes 3] [--seed 0]
                         [--reader DIR] [--syncnet DIR] [--fid-weights FILE] [--json scores.json]

Four rows (ground-truth frames, ground-truth motion rendered, generated, audio-free) read by the
SynthTalk reader and the sync network, identity preservation and leakage, drift over a long
rollout, and FID when Inception-v3 weights are given; see `jaxtalk.eval.synthtalk_eval`. Prints
a table; with --json also writes every number and, beside it, the report figure (scores.json ->
scores.png) and the first clip's rows as frames (scores_frames.png); each file appears only once
complete.
"""

from __future__ import annotations

import sys
from pathlib import Path

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
  p.add_argument(
    "--renderer-run",
    help="instead of a bundle, a training workdir whose stage 1 (renderer) is scored alone: "
    "the ground-truth rows, reconstruction and identity",
  )
  p.add_argument("--data", required=True, help="SynthTalk folder with eval shards")
  p.add_argument("--clips", type=int, default=20, help="eval clips to score")
  p.add_argument(
    "--probe-clips",
    type=int,
    default=200,
    help="eval clips (2 per person) the identity-leakage probe reads; 120 or more to trust it",
  )
  p.add_argument(
    "--drift-minutes",
    type=float,
    default=3.0,
    help="length of the drift rollout (one held-out person talking); 0 skips it",
  )
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
  p.add_argument(
    "--fid-weights",
    help="Inception-v3 weights for FID (.safetensors of pytorch-fid's checkpoint; see "
    "jaxtalk.eval.fid for the one-line conversion); without it no FID is computed",
  )
  p.add_argument("--json", help="also write the results to this JSON file")
  return p.parse_args(argv)


def run(args) -> dict:
  # Cheap checks first: a wrong path should fail in a second, before jax compiles anything.
  from jaxtalk.data.clips import shard_paths
  from jaxtalk.inference.bundle import load_bundle

  if args.clips < 1 or args.probe_clips < 1:
    raise UserError("--clips and --probe-clips must be at least 1")
  if args.drift_minutes < 0:
    raise UserError("--drift-minutes must be 0 (no rollout) or more")
  if args.renderer_run:
    from jaxtalk.stages.export import stage_config, stage_params

    config = stage_config(args.renderer_run, "renderer")
    params = stage_params(args.renderer_run, config, ("renderer",))
  else:
    config, params = load_bundle(args.checkpoint)
  shard_paths(args.data, "eval")

  from tqdm import tqdm

  from jaxtalk.eval.inception import load_inception
  from jaxtalk.eval.reader import Reader
  from jaxtalk.eval.syncnet import SyncNet
  from jaxtalk.eval.synthtalk_eval import ROWS, evaluate, format_report, frames_strip
  from jaxtalk.inference.generate import TalkingHead

  reader = Reader.load(args.reader, image_size=config.data.image_size)
  syncnet = SyncNet.load(args.syncnet)
  inception = load_inception(args.fid_weights) if args.fid_weights else None
  renderer_only = bool(args.renderer_run)
  steps = args.clips + (args.drift_minutes > 0 and not renderer_only)
  model = TalkingHead(config, params)
  with tqdm(total=steps, unit="step", desc="evaluating", file=sys.stderr) as bar:
    results = evaluate(
      model,
      args.data,
      reader,
      syncnet,
      num_clips=args.clips,
      probe_clips=args.probe_clips,
      drift_minutes=args.drift_minutes,
      inception=inception,
      renderer_only=renderer_only,
      seed=args.seed,
      progress=bar.update,
    )
  results = {
    "checkpoint": str(args.renderer_run or args.checkpoint),
    "data": str(args.data),
    "reader_folder": str(args.reader),
    "syncnet_folder": str(args.syncnet),
    **results,
  }
  print_report(format_report(results), results, args.json)
  if args.json:
    import imageio.v3 as iio

    from jaxtalk.eval.figure import write_figure
    from jaxtalk.media import atomic_output_path

    figure = Path(args.json).with_suffix(".png")
    write_figure(results, figure)
    print(f"wrote {figure}")
    strip_path = figure.with_name(f"{figure.stem}_frames.png")
    strip = frames_strip(model, args.data, renderer_only=renderer_only, seed=args.seed)
    with atomic_output_path(str(strip_path)) as tmp:
      iio.imwrite(tmp, strip, extension=".png")
    print(f"wrote {strip_path} (rows: {', '.join(ROWS[n] for n in results['rows'])})")
  return results


def main(argv=None) -> int:
  return run_command(run, parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
