"""Benchmark sampling and training speed on this machine.

  python -m jaxtalk.bench [--checkpoint DIR] [--seconds 10] [--lengths 4 8 16] [--json bench.json]

Without --checkpoint it times the bundled demo model, or, when there is none, random weights for
configs/demo.py (the same programs, so the same speed). Prints one table: sampling speed of a file
split into motion and rendering; a live stream's first-frame latency, real-time factor and chunk
latencies; a fresh process's compile time with an empty and a filled disk cache; one train step of
each stage; and the KV-cache motion sampler against recomputation at several audio lengths.
"""

from __future__ import annotations

import dataclasses
import sys

from jaxtalk.cli import argument_parser, print_report, run_command
from jaxtalk.demo import DEMO_BUNDLE
from jaxtalk.errors import UserError


def parse_args(argv=None):
  p = argument_parser("python -m jaxtalk.bench", __doc__)
  p.add_argument(
    "--checkpoint",
    help="model bundle folder (default: the bundled demo model, or "
    "random weights for configs/demo.py without one)",
  )
  p.add_argument("--seconds", type=float, default=10.0, help="audio length for the sampling speed")
  p.add_argument(
    "--lengths",
    type=float,
    nargs="+",
    default=[4.0, 8.0, 16.0],
    help="audio lengths (s) for KV cache vs recompute",
  )
  p.add_argument(
    "--skip-startup",
    action="store_true",
    help="skip timing two fresh processes' compilation (empty and filled disk cache)",
  )
  p.add_argument("--json", help="also write the results to this JSON file")
  return p.parse_args(argv)


def load_model(checkpoint: str | None):
  """(config, params, a description of what they are)."""
  from jaxtalk.bench.model import DEMO_CONFIG, load_config_file, random_params
  from jaxtalk.inference.bundle import load_bundle

  if checkpoint is None and not DEMO_BUNDLE.is_dir():
    config = load_config_file(DEMO_CONFIG)
    description = (
      f"configs/demo.py with random weights (no bundle at {DEMO_BUNDLE}); "
      "speed is that of the trained model"
    )
    return config, random_params(config), description
  path = checkpoint or DEMO_BUNDLE
  config, params = load_bundle(path)
  return config, params, f"bundle {path}"


def run(args) -> dict:
  if args.seconds <= 0 or min(args.lengths) <= 0:
    raise UserError("--seconds and --lengths must be positive")
  config, params, description = load_model(args.checkpoint)

  from jaxtalk.bench.machine import describe_machine
  from jaxtalk.bench.report import format_report
  from jaxtalk.bench.sampling import sampler_comparison, synthtalk_inputs
  from jaxtalk.bench.streaming import file_speed, live_speed, startup
  from jaxtalk.bench.training import train_step_time
  from jaxtalk.inference.generate import SampleOptions, TalkingHead
  from jaxtalk.stages import STAGES

  say = lambda message: print(message, file=sys.stderr, flush=True)

  model = TalkingHead(config, params)
  options = SampleOptions.from_config(config.sample)
  portrait, waveform = synthtalk_inputs(config, args.seconds)
  results = {
    "model": description,
    "machine": describe_machine(),
    "image_size": config.data.image_size,
    "sample_options": dataclasses.asdict(options),
  }
  say(f"sampling {args.seconds:g} s of audio ...")
  results["sampling"] = file_speed(model, portrait, waveform, options)
  say(f"streaming {args.seconds:g} s of audio live ...")
  results["live"] = live_speed(model, portrait, waveform, options)
  if not args.skip_startup:
    say("starting two fresh processes, with an empty and a filled compilation cache ...")
    results["startup"] = startup(args.checkpoint)
  results["train_step"] = {}
  for stage in STAGES:
    say(f"train step, {stage} ...")
    timing, batch = train_step_time(config, stage, model.params)
    results["train_step"][stage] = {"batch": batch, **dataclasses.asdict(timing)}
  say(f"KV cache vs recompute at {', '.join(f'{s:g}' for s in args.lengths)} s ...")
  results["samplers"] = sampler_comparison(model, options, args.lengths)

  print_report(format_report(results), results, args.json)
  return results


def main(argv=None) -> int:
  return run_command(run, parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
