"""One real video -> its clean, eye-aligned clips, staged on disk with a report of what was dropped.

`ingest_video` is the unit of work that the local process pool (`jaxtalk.data.ingest`) and the
Beam pipeline (`jaxtalk.data.ingest_beam`) both run, one call per video. It reads the video twice
at 25 fps: the first pass finds scene cuts, tracks the face and its eyes and decides the clips;
the second warps each clip's frames by its smoothed per-frame alignment. Its clips go to a folder
of their own in the run's staging folder (`jaxtalk.data.ingest_staging`), its report written last.
"""

import dataclasses
import itertools
import math
import os
import shutil
from collections.abc import Iterator

import cv2
import numpy as np

from jaxtalk.data import clips, ingest_staging
from jaxtalk.data.ingest_spans import SceneCuts, Span, runs, split_spans
from jaxtalk.errors import UserError
from jaxtalk.media import audio_io, face_align, face_landmarks, face_track, video_io
from jaxtalk.timebase import FPS, SAMPLES_PER_FRAME, frames_of

# Shorter runs of usable frames are dropped: too little motion to learn from.
MIN_CLIP_SECONDS = 1.0
# Transform entries are stored to this many decimals: a hundredth of a pixel across 1000 px.
_TRANSFORM_DECIMALS = 5


@dataclasses.dataclass(frozen=True)
class IngestSettings:
  """How videos become clips; the same for every video of a run."""

  image_size: int = 64
  split: str = "train"
  max_seconds: float = 60.0
  min_face_px: float = 40.0  # faces smaller than this (face box side, in video pixels) are dropped
  detect_every: int = 5  # frames between face detections; the box is interpolated in between


class _Skip(Exception):
  """A video that cannot become any clip; the message is the one-line reason."""


@dataclasses.dataclass
class _Analysis:
  """What the first pass learned about every frame at 25 fps."""

  faces: list[face_track.Face | None] = dataclasses.field(default_factory=list)
  eyes: list[np.ndarray | None] = dataclasses.field(default_factory=list)
  problems: list[str | None] = dataclasses.field(default_factory=list)
  scene_starts: list[bool] = dataclasses.field(default_factory=list)


def ingest_video(path: str, staging: str, settings: IngestSettings) -> dict:
  """Stages the clips of one video in the staging folder `staging` and returns its report.

  The report: {"video": NAME, "clips": [{"clip_id", "frames": [start, end)}], "skipped":
  [{"frames": [start, end) or None for the whole video, "reason"}]}, frames at 25 fps.
  """
  name = os.path.basename(path)
  folder = ingest_staging.video_dir(staging, name)
  # Whatever an interrupted attempt left is incomplete: start over.
  shutil.rmtree(folder, ignore_errors=True)
  report = {"video": name, "clips": [], "skipped": []}
  try:
    clip_iterator = _clips(path, settings, report)
    clips.write_shards(clip_iterator, folder, settings.split)
  except (_Skip, UserError) as reason:  # UserError: unreadable file, silent audio, ...
    shutil.rmtree(folder, ignore_errors=True)
    report = {"video": name, "clips": [], "skipped": [{"frames": None, "reason": str(reason)}]}
  ingest_staging.write_report(staging, report, settings)
  return report


def _clips(path: str, settings: IngestSettings, report: dict) -> Iterator[clips.Clip]:
  """The video's clips; fills in `report` as it goes. Raises _Skip before the first clip."""
  info = video_io.probe_video(path)
  if not info.has_audio:
    raise _Skip("no audio track")
  audio = audio_io.load_audio(path)
  # Frames at 25 fps that both the picture and the sound cover.
  total_frames = min(math.floor(info.num_frames / info.fps * FPS), frames_of(audio.size))
  min_frames = math.ceil(MIN_CLIP_SECONDS * FPS)
  if total_frames < min_frames:
    raise _Skip(f"only {total_frames / FPS:.1f} s long; need at least {MIN_CLIP_SECONDS:g} s")
  analysis = _analyse(path, total_frames, settings)
  if not any(problem is None for problem in analysis.problems):
    raise _Skip(_commonest(analysis.problems))
  spans = split_spans(
    analysis.problems, analysis.scene_starts, min_frames, math.floor(settings.max_seconds * FPS)
  )
  report["skipped"] = [
    {"frames": [span.start, span.end], "reason": span.reason} for span in spans if span.reason
  ]
  kept = [span for span in spans if span.reason is None]
  if not kept:
    raise _Skip(_commonest([span.reason for span in spans]))
  name = os.path.basename(path)
  meta = {
    "identity_id": f"video:{name}",
    "source": f"video:{name}",
    "split": settings.split,
    "source_fps": info.fps,
    "source_size": [info.width, info.height],
  }
  return _render(path, audio, kept, analysis, settings, meta, report)


def _commonest(reasons: list[str]) -> str:
  """The reason most frames were dropped for: the one line for a video that gives no clip."""
  return max(set(reasons), key=reasons.count)


def _frames(path: str, total_frames: int) -> Iterator[np.ndarray]:
  return itertools.islice(video_io.iter_frames(path, fps=FPS), total_frames)


def _analyse(path: str, total_frames: int, settings: IngestSettings) -> _Analysis:
  """The first pass: scene cuts, the speaker's face and, on usable frames, the eyes."""
  analysis = _Analysis()
  cuts = SceneCuts()

  def scenes():
    for frame in _frames(path, total_frames):
      analysis.scene_starts.append(cuts.starts_scene(frame))
      yield frame, analysis.scene_starts[-1]

  for tracked in face_track.track_faces(scenes(), settings.detect_every, settings.min_face_px):
    analysis.faces.append(tracked.face)
    analysis.problems.append(tracked.problem)
    usable = tracked.problem is None
    gray = cv2.cvtColor(tracked.frame, cv2.COLOR_RGB2GRAY) if usable else None
    analysis.eyes.append(face_landmarks.find_eyes(gray, tracked.face) if usable else None)
  # The decoder may stop a frame short of the container's length.
  del analysis.scene_starts[len(analysis.problems) :]
  return analysis


def _alignments(analysis: _Analysis) -> dict[int, np.ndarray]:
  """Each usable frame's smoothed alignment parameters, by frame index.

  Smoothing runs over whole runs of usable frames, so neither a clip boundary inside one nor
  `max_seconds` changes a frame's crop.
  """
  parameters = {}
  for run in runs(analysis.problems, analysis.scene_starts):
    if run.reason is None:
      window = slice(run.start, run.end)
      smoothed = face_align.track_parameters(analysis.faces[window], analysis.eyes[window])
      parameters.update(zip(range(run.start, run.end), smoothed))
  return parameters


def _render(
  path: str,
  audio: np.ndarray,
  kept: list[Span],
  analysis: _Analysis,
  settings: IngestSettings,
  meta: dict,
  report: dict,
) -> Iterator[clips.Clip]:
  """The second pass: every kept span's frames, aligned, as clips."""
  alignments = _alignments(analysis)
  name = os.path.basename(path)
  size = settings.image_size
  frames, position = _frames(path, kept[-1].end), 0
  for index, span in enumerate(kept):
    # The frames are one stream: skip to the span's start, then take the span.
    span_frames = itertools.islice(frames, span.start - position, span.end - position)
    position = span.end
    crops = [
      face_align.aligned_crop(frame, alignments[t], size)
      for t, frame in zip(range(span.start, span.end), span_frames)
    ]
    transforms = [
      np.round(face_align.crop_transform(alignments[t], size), _TRANSFORM_DECIMALS).tolist()
      for t in range(span.start, span.end)
    ]
    clip_id = f"{name}-{index:03d}"
    report["clips"].append({"clip_id": clip_id, "frames": [span.start, span.end]})
    yield clips.Clip(
      frames=np.stack(crops),
      audio=audio[span.start * SAMPLES_PER_FRAME : span.end * SAMPLES_PER_FRAME].copy(),
      meta=dict(
        meta,
        clip_id=clip_id,
        start_seconds=span.start / FPS,
        first_frame=span.start,
        canonical_eyes=face_align.CANONICAL_EYES.tolist(),
        # The rest of the frames are aligned by their face box (see face_align).
        eyes_found=sum(eyes is not None for eyes in analysis.eyes[span.start : span.end])
        / (span.end - span.start),
        crop_transforms=transforms,
      ),
    )
