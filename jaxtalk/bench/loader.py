"""Data loader throughput: training windows per second on one host, next to what a step consumes.

  python -m jaxtalk.bench.loader [--config configs/gpu256.py] [--data DIR] [--clips 8]
      [--clip-seconds 60] [--codec jpeg] [--batches 4] [--hosts 1]
      [--renderer-step SECONDS] [--motion-step SECONDS] [--json loader.json]

Batches come from each stage's own data pipeline for the config (`jaxtalk.data.pipeline`): stage 1
(renderer) windows of one target frame and a reference frame; stage 2 (motion) windows of
motion_train.window_frames frames with their audio margins, of which it decodes no frame (it
trains on motion latents looked up by clip and frame, a lookup left out here). The clips are
--data's train shards, or made up: --clips clips of --clip-seconds at the config's image size
(ingest cuts real video into clips of up to 60 s), with photo-like frames
(`jaxtalk.bench.shards.photo_frames`) stored with --codec. Timing starts at the iterator's
creation, so read-ahead cannot hide any of the work.

A step of B windows taking s seconds consumes B / s windows per second: given a stage's step time
(measured on the accelerator, e.g. by `python -m jaxtalk.bench`), the table says whether data or
compute bounds training; without one, the shortest step the loader keeps up with.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from jaxtalk.bench.model import load_config_file
from jaxtalk.cli import argument_parser, print_report, run_command
from jaxtalk.data import clips
from jaxtalk.data.frame_codecs import JPEG, RAW
from jaxtalk.errors import UserError
from jaxtalk.timebase import FPS, SAMPLES_PER_FRAME

GPU256_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "gpu256.py"
CODECS = {"jpeg": JPEG, "raw": RAW}
# Distinct frames a made-up clip cycles through: enough for the codec to see varied content,
# few enough that making minutes of video takes seconds.
_DISTINCT_FRAMES = 50


def make_clips(folder: str, num_clips: int, seconds: float, size: int, codec_name: str) -> None:
  """Writes `num_clips` made-up clips of `seconds` as the folder's train shards."""
  from jaxtalk.bench.shards import photo_frames

  num_frames = max(1, round(seconds * FPS))
  rng = np.random.default_rng(0)

  def clip(index: int) -> clips.Clip:
    distinct = photo_frames(size, min(_DISTINCT_FRAMES, num_frames), seed=index)
    audio = rng.uniform(-0.3, 0.3, num_frames * SAMPLES_PER_FRAME).astype(np.float32)
    frames = distinct[np.arange(num_frames) % len(distinct)]
    return clips.Clip(frames=frames, audio=audio, meta={"clip_id": f"bench-{index}"})

  clips.write_shards(map(clip, range(num_clips)), folder, "train", frame_codec=CODECS[codec_name])


def stage_batches(config, stage_name: str, hosts: int):
  """Host 0's batches of the stage's training windows, as the stage's data pipeline draws them."""
  from jaxtalk.stages import STAGES

  stage = STAGES[stage_name](config)
  if stage_name == "renderer":
    return stage.dataset(None, 0, hosts)
  # The motion stage's windows (MotionStage.dataset) without the latent lookup, which needs a
  # trained stage 1.
  margin = stage.models.audio_margin_frames
  return stage.windows(stage.settings.window_frames, margin, 0, hosts, with_frames=False)


def loader_speed(batches, count: int) -> dict:
  """Seconds per batch over the first `count` batches of `batches`, and windows per second."""
  start = time.perf_counter()
  iterator = iter(batches)
  for _ in range(count):
    batch = next(iterator)
  seconds = (time.perf_counter() - start) / count
  rows = len(batch["clip_index"])
  return {"host_batch": rows, "batch_seconds": seconds, "windows_per_second": rows / seconds}


def _num_clips(path: str) -> int:
  shard = clips.ClipShard(path)
  count = len(shard)
  shard.close()
  return count


def _window_shape(config, stage_name: str) -> str:
  size = config.data.image_size
  if stage_name == "renderer":
    return f"1 frame + reference, {size}x{size}"
  return f"{config.motion_train.window_frames} frames' audio, no pixels"


def _verdict(speed: dict, step_seconds: float | None) -> str:
  if step_seconds is None:
    return f"keeps up with steps of >= {speed['batch_seconds']:.3f} s"
  needed = speed["host_batch"] / step_seconds
  bound = "data-bound" if speed["windows_per_second"] < needed else "compute-bound"
  return f"a {step_seconds:g} s step eats {needed:.0f} windows/s: {bound}"


def format_table(results: dict) -> str:
  machine, data = results["machine"], results["data"]
  lines = [
    f"data loader, host 0 of {results['hosts']}: {machine['cpu']}, {results['cores']} cores "
    f"usable; {machine['date']}",
    f"data: {data['description']}; {data['clip_mb']:.1f} MB per clip",
    f"{'stage (config ' + results['config'] + ')':<44}{'batch':>6}{'s/batch':>9}{'windows/s':>11}"
    "   vs a train step",
  ]
  for stage, speed in results["stages"].items():
    label = f"{stage}: {speed['window']}"
    lines.append(
      f"{label:<44}{speed['host_batch']:>6}{speed['batch_seconds']:>9.3f}"
      f"{speed['windows_per_second']:>11.1f}   {speed['verdict']}"
    )
  return "\n".join(lines)


def run(args) -> dict:
  if args.batches < 1 or args.clips < 1 or args.clip_seconds <= 0 or args.hosts < 1:
    raise UserError("--batches, --clips, --clip-seconds and --hosts must be positive")
  config = load_config_file(Path(args.config))
  from jaxtalk.bench.machine import describe_machine

  results = {
    "machine": describe_machine(),
    "cores": len(os.sched_getaffinity(0)),
    "config": Path(args.config).name,
    "hosts": args.hosts,
    "stages": {},
  }
  steps = {"renderer": args.renderer_step, "motion": args.motion_step}
  with tempfile.TemporaryDirectory() as made_up:
    if args.data:
      folder, description = args.data, f"train shards of {args.data}"
    else:
      folder = made_up
      print(f"making {args.clips} clips of {args.clip_seconds:g} s ...", file=sys.stderr)
      size = config.data.image_size
      make_clips(folder, args.clips, args.clip_seconds, size, args.codec)
      description = f"{args.clips} made-up clips of {args.clip_seconds:g} s, {args.codec} frames"
    paths = clips.shard_paths(folder, "train")
    num_clips = sum(map(_num_clips, paths))
    results["data"] = {
      "description": description,
      "clip_mb": sum(map(os.path.getsize, paths)) / num_clips / 1e6,
    }
    config.data.train_dir = folder
    for stage_name, step_seconds in steps.items():
      print(f"reading {stage_name} batches ...", file=sys.stderr)
      speed = loader_speed(stage_batches(config, stage_name, args.hosts), args.batches)
      speed["window"] = _window_shape(config, stage_name)
      speed["verdict"] = _verdict(speed, step_seconds)
      results["stages"][stage_name] = speed
  print_report(format_table(results), results, args.json)
  return results


def parse_args(argv=None):
  parser = argument_parser("python -m jaxtalk.bench.loader", __doc__)
  parser.add_argument("--config", default=str(GPU256_CONFIG), help="config file of the run")
  parser.add_argument("--data", help="folder of clip shards (default: made-up clips)")
  parser.add_argument("--clips", type=int, default=8, help="made-up clips")
  parser.add_argument("--clip-seconds", type=float, default=60.0, help="length of each")
  parser.add_argument("--codec", choices=sorted(CODECS), default="jpeg", help="their frames'")
  parser.add_argument("--batches", type=int, default=4, help="batches timed per stage")
  parser.add_argument("--hosts", type=int, default=1, help="hosts sharing each global batch")
  parser.add_argument("--renderer-step", type=float, help="seconds per stage-1 train step")
  parser.add_argument("--motion-step", type=float, help="seconds per stage-2 train step")
  parser.add_argument("--json", help="also write the results to this JSON file")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  return run_command(run, parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
