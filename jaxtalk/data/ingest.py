"""Real talking-head videos -> clean, face-cropped clip shards, in the format SynthTalk writes.

  python -m jaxtalk.data.ingest --videos DIR --out DIR [--image-size 64] [--split train]
      [--max-seconds 60] [--min-face 40] [--crop clip|track] [--workers N]
      [--runner DirectRunner [BEAM OPTIONS]]

Every mp4 / mov / mkv / webm file in the folder is resampled to 25 fps with 16 kHz mono audio and
cut into clean clips: a clip never crosses a scene cut, and holds only frames where one face of at
least `--min-face` px is in the frame with no second face of comparable size beside it (see
`jaxtalk.data.ingest_video`). With `--crop clip` (the default) each clip is cut out of the video
by one still crop that puts the eyes at fixed places in the `image_size` square on average, so
the head moves, rolls and zooms inside the frame; a clip ends where the face would leave its crop.
`--crop track` warps every frame so the eyes sit at those places (`jaxtalk.media.face_align`).
The clip's meta records each frame's transform and where its eyes are in the output. Clean
stretches longer than `--max-seconds` become consecutive clips of at most that length.

Everything dropped (a video without audio, a span without a usable face, a too-short tail) is
logged as "skip NAME [START-END s]: REASON" and listed in SPLIT-ingest_report.jsonl next to the
shards, as is a clip begun where the face left the crop of the one before ("split NAME at T s").
Videos are ingested in parallel, one process per video (`--workers`), or, with `--runner`, as an
Apache Beam pipeline (`jaxtalk.data.ingest_beam`); both write the same shards.
A run that stops part way resumes where it stopped: videos it finished are not ingested again.
"""

import concurrent.futures
import dataclasses
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence

import cv2

from jaxtalk.cli import argument_parser, run_command
from jaxtalk.data import clips, ingest_staging
from jaxtalk.data.ingest_video import CROPS, MIN_CLIP_SECONDS, IngestSettings, ingest_video
from jaxtalk.errors import UserError
from jaxtalk.timebase import FPS

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")
# Smaller faces hold too few pixels for the eye detector (about 10 px per eye).
SMALLEST_MIN_FACE_PX = 24


@dataclasses.dataclass
class IngestSummary:
  """What `ingest_folder` did."""

  shards: list[str]
  clips: int
  seconds: float  # total length of the clips written
  skipped: list[tuple[str, str]]  # (video file or "file [start-end s]", reason)
  # ("file at T s", reason) for each clip begun where the one before lost its face.
  splits: list[tuple[str, str]]


def _video_paths(video_dir: str) -> list[str]:
  if not os.path.isdir(video_dir):
    raise UserError(
      f"video folder {video_dir} does not exist; give a folder of mp4, mov, mkv or webm files"
    )
  paths = sorted(
    os.path.join(video_dir, name)
    for name in os.listdir(video_dir)
    if name.lower().endswith(VIDEO_SUFFIXES) and os.path.isfile(os.path.join(video_dir, name))
  )
  if not paths:
    raise UserError(f"no {', '.join(VIDEO_SUFFIXES)} files in {video_dir}")
  return paths


def _check(settings: IngestSettings, workers: int) -> None:
  if settings.image_size < 8 or settings.max_seconds < MIN_CLIP_SECONDS:
    raise UserError(
      f"need --image-size >= 8 and --max-seconds >= {MIN_CLIP_SECONDS:g}, got "
      f"{settings.image_size} and {settings.max_seconds:g}"
    )
  if settings.min_face_px < SMALLEST_MIN_FACE_PX or settings.detect_every < 1 or workers < 1:
    raise UserError(
      f"need --min-face >= {SMALLEST_MIN_FACE_PX}, --detect-every >= 1 and --workers >= 1, got "
      f"{settings.min_face_px:g}, {settings.detect_every} and {workers}"
    )
  if settings.crop not in CROPS:
    raise UserError(f"--crop is one of {', '.join(CROPS)}, got {settings.crop}")


def skip_lines(report: dict) -> list[tuple[str, str]]:
  """(label, reason) for everything a video's report says was dropped."""
  lines = []
  for skipped in report["skipped"]:
    label = report["video"]
    if skipped["frames"] is not None:
      start, end = (frame / FPS for frame in skipped["frames"])
      label += f" [{start:.1f}-{end:.1f} s]"
    lines.append((label, skipped["reason"]))
  return lines


def split_lines(report: dict) -> list[tuple[str, str]]:
  """(label, reason) for every clip of a video's report that starts where the one before lost its
  face."""
  return [
    (f"{report['video']} at {clip['frames'][0] / FPS:.1f} s", clip["split"])
    for clip in report["clips"]
    if "split" in clip
  ]


def ingest_folder(
  video_dir: str,
  out_dir: str,
  settings: IngestSettings | None = None,
  workers: int | None = None,
  runner: str | None = None,
  pipeline_args: Sequence[str] = (),
  log: Callable[[str], None] = print,
) -> IngestSummary:
  """Turns every video in `video_dir` into clips in `{split}-*.array_record` shards under `out_dir`.

  `settings` default to `IngestSettings()`. `workers` processes (default: one per core) ingest a
  video each, or with `runner` an Apache Beam pipeline does (`pipeline_args`: further Beam
  options). Each dropped video or span is reported through `log` as "skip LABEL: REASON". Raises
  UserError if the folder is missing or holds no videos, a setting is out of range, or `out_dir`
  already has this split.
  """
  settings = settings or IngestSettings()
  if workers is None:
    workers = os.cpu_count() or 1
  _check(settings, workers)
  paths = _video_paths(video_dir)
  # write_shards refuses an output that already holds the split; asking with no clips finds that
  # out now rather than after hours of ingest.
  clips.write_shards((), out_dir, settings.split)
  staging = ingest_staging.staging_dir(out_dir, settings.split)
  pending = [
    path
    for path in paths
    if ingest_staging.finished_report(staging, os.path.basename(path), settings) is None
  ]
  if len(pending) < len(paths):
    log(f"{len(paths) - len(pending)} of {len(paths)} videos were finished by an earlier run")
  names = [os.path.basename(path) for path in paths]
  if runner is None:
    _ingest_locally(pending, staging, settings, workers, log)
    reports = ingest_staging.assemble(names, out_dir, settings)
  else:
    from jaxtalk.data import ingest_beam

    reports = ingest_beam.run_pipeline(pending, names, out_dir, settings, runner, pipeline_args)
  skipped = [line for report in reports for line in skip_lines(report)]
  for label, reason in skipped:
    log(f"skip {label}: {reason}")
  splits = [line for report in reports for line in split_lines(report)]
  for label, reason in splits:
    log(f"split {label}: {reason}")
  frames = [
    end - start for report in reports for start, end in (c["frames"] for c in report["clips"])
  ]
  return IngestSummary(
    shards=clips.shard_paths(out_dir, settings.split) if frames else [],
    clips=len(frames),
    seconds=sum(frames) / FPS,
    skipped=skipped,
    splits=splits,
  )


def _ingest_locally(
  paths: list[str], staging: str, settings: IngestSettings, workers: int, log: Callable
) -> None:
  """Ingests each video into the staging folder, `workers` at a time."""
  if workers == 1 or len(paths) <= 1:
    for done, path in enumerate(paths, 1):
      ingest_video(path, staging, settings)
      log(f"ingested {os.path.basename(path)} ({done}/{len(paths)})")
    return
  # Fresh interpreters: a forked worker would inherit whatever threads the parent runs.
  context = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(
    workers, mp_context=context, initializer=_one_thread_per_worker
  ) as pool:
    futures = {pool.submit(ingest_video, path, staging, settings): path for path in paths}
    try:
      for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
        future.result()
        log(f"ingested {os.path.basename(futures[future])} ({done}/{len(paths)})")
    except BaseException:
      pool.shutdown(cancel_futures=True)
      raise


def _one_thread_per_worker() -> None:
  # One worker per core already keeps the cores busy; OpenCV's own threads would only contend.
  cv2.setNumThreads(1)


def main(argv: list[str] | None = None) -> int:
  parser = argument_parser("python -m jaxtalk.data.ingest", __doc__)
  parser.add_argument(
    "--videos", required=True, help="folder of mp4, mov, mkv or webm talking-head videos"
  )
  parser.add_argument("--out", required=True, help="folder for the ArrayRecord shards")
  parser.add_argument("--image-size", type=int, default=64, help="frame height and width in pixels")
  parser.add_argument(
    "--split", default="train", help="split name: shards are named SPLIT-00000.array_record"
  )
  parser.add_argument(
    "--max-seconds",
    type=float,
    default=60.0,
    help="longer clean stretches are cut into consecutive clips of at most this length",
  )
  parser.add_argument(
    "--min-face",
    type=float,
    default=IngestSettings.min_face_px,
    help="frames whose face box is narrower than this (video pixels) are dropped",
  )
  parser.add_argument(
    "--detect-every",
    type=int,
    default=IngestSettings.detect_every,
    help="frames between face detections; the face is interpolated in between",
  )
  parser.add_argument(
    "--crop",
    default=IngestSettings.crop,
    choices=CROPS,
    help="clip: one still crop per clip, the head moving inside it; track: every frame aligned "
    "to its own eyes",
  )
  parser.add_argument(
    "--workers", type=int, default=os.cpu_count(), help="videos ingested at once, one per process"
  )
  parser.add_argument(
    "--runner",
    help="run as an Apache Beam pipeline on this runner (DirectRunner, DataflowRunner, ...); "
    "further options are passed to Beam",
  )
  args, beam_args = parser.parse_known_args(argv)
  if beam_args and args.runner is None:
    parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
  args.beam_args = beam_args
  return run_command(_ingest_command, args)


def _ingest_command(args) -> None:
  settings = IngestSettings(
    image_size=args.image_size,
    split=args.split,
    max_seconds=args.max_seconds,
    min_face_px=args.min_face,
    detect_every=args.detect_every,
    crop=args.crop,
  )
  summary = ingest_folder(
    args.videos, args.out, settings, args.workers, args.runner, args.beam_args
  )
  print(
    f"{args.split}: {summary.clips} clips ({summary.seconds:.1f} s) at {args.image_size}x"
    f"{args.image_size} -> {len(summary.shards)} shards in {args.out}; skipped "
    f"{len(summary.skipped)} (see {ingest_staging.report_path(args.out, args.split)})"
  )


if __name__ == "__main__":
  sys.exit(main())
