"""The staging folder of an ingest run, and the shards and report assembled from it at the end.

Each video's clips are written to OUT/.ingest-SPLIT/NAME/ by whichever process ingested it, its
report last (`report.json`, with the settings it was made with). A run that stops part way leaves
finished videos there; the next run with the same settings reuses them. Once every video is
finished, one process copies their clips, in sorted video order, into the split's shards with
`clips.write_shards` (so the shards do not depend on which worker finished first), writes
SPLIT-ingest_report.jsonl beside them and removes the staging folder.
"""

import dataclasses
import itertools
import json
import os
import shutil
from collections.abc import Iterator

from jaxtalk.data import clips
from jaxtalk.media import write_bytes, write_json

REPORT_FILE = "report.json"


def staging_dir(out_dir: str, split: str) -> str:
  return os.path.join(out_dir, f".ingest-{split}")


def report_path(out_dir: str, split: str) -> str:
  """The run's report: one JSON line per video, what it gave and what was dropped and why."""
  return os.path.join(out_dir, f"{split}-ingest_report.jsonl")


def read_report(out_dir: str, split: str) -> list[dict]:
  with open(report_path(out_dir, split)) as f:
    return [json.loads(line) for line in f]


def video_dir(staging: str, name: str) -> str:
  return os.path.join(staging, name)


def write_report(staging: str, report: dict, settings) -> None:
  """Marks a video finished: its clips are all staged."""
  record = dict(report, settings=dataclasses.asdict(settings))
  write_json(os.path.join(video_dir(staging, report["video"]), REPORT_FILE), record)


def finished_report(staging: str, name: str, settings) -> dict | None:
  """The report of a video staged with these settings, or None if it is not finished with them."""
  path = os.path.join(video_dir(staging, name), REPORT_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    report = json.load(f)
  return report if report.pop("settings") == dataclasses.asdict(settings) else None


def _staged_clips(staging: str, report: dict, split: str) -> Iterator[clips.Clip]:
  if not report["clips"]:
    return iter(())
  return clips.read_clips(clips.shard_paths(video_dir(staging, report["video"]), split))


def assemble(names: list[str], out_dir: str, settings) -> list[dict]:
  """Writes the finished videos' clips into the split's shards and the report; returns the reports.

  `names` are the video file names, all finished in the staging folder.
  """
  staging = staging_dir(out_dir, settings.split)
  reports = [finished_report(staging, name, settings) for name in sorted(names)]
  # The staged clips are decoded and encoded again: `clips` has no way to copy a record as it is.
  staged = itertools.chain.from_iterable(
    _staged_clips(staging, report, settings.split) for report in reports
  )
  clips.write_shards(staged, out_dir, settings.split)
  lines = "".join(json.dumps(report) + "\n" for report in reports)
  write_bytes(report_path(out_dir, settings.split), lines.encode())
  shutil.rmtree(staging)
  return reports
