"""One real video -> its clean, face-cropped clips, staged on disk with a report of what was dropped.

`ingest_video` is the unit of work that the local process pool (`jaxtalk.data.ingest`) and the
Beam pipeline (`jaxtalk.data.ingest_beam`) both run, one call per video. It reads the video twice
at 25 fps: the first pass finds scene cuts, tracks the face and its eyes, smooths each frame's
alignment and decides the clips; the second warps each clip's frames. Its clips go to a folder of
their own in the run's staging folder (`jaxtalk.data.ingest_staging`), its report written last.

Crops (`IngestSettings.crop`, see `jaxtalk.media.face_align`): "clip" warps all of a clip's frames
by one still crop, so the head moves, rolls and zooms inside the frame as in SynthTalk and as the
motion model must learn it; a clip ends where its face would leave that crop. "track" aligns every
frame to its own eyes, which removes the head's travel, roll and zoom. Either way the clip's meta
holds, per frame, the crop's transform (`crop_transforms` [T, 2, 3], from frame pixels to output
pixels: the one still crop repeated in "clip") and where the eyes are in the output (`eyes`
[T, 2, 2], output pixels: canonical in "track"), so head pose stays measurable.
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
# Eye positions in the output, to a thousandth of its pixels.
_EYE_DECIMALS = 3
CROPS = ("clip", "track")


@dataclasses.dataclass(frozen=True)
class IngestSettings:
  """How videos become clips; the same for every video of a run."""

  image_size: int = 64
  split: str = "train"
  max_seconds: float = 60.0
  min_face_px: float = 40.0  # faces smaller than this (face box side, in video pixels) are dropped
  detect_every: int = 5  # frames between face detections; the box is interpolated in between
  crop: str = "clip"  # one of CROPS: one still crop per clip, or every frame aligned to its eyes


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
  alignments = _alignments(analysis)

  def holds(start: int, end: int) -> bool:
    window = alignments[start:end]
    return face_align.stays_in_crop(window, face_align.still_parameters(window))

  spans = split_spans(
    analysis.problems,
    analysis.scene_starts,
    min_frames,
    math.floor(settings.max_seconds * FPS),
    holds if settings.crop == "clip" else None,
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
  return _render(path, audio, kept, analysis, alignments, settings, meta, report)


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


def _alignments(analysis: _Analysis) -> np.ndarray:
  """Every frame's smoothed alignment parameters [T, 4]; NaN where the frame is not usable.

  Smoothing runs over whole runs of usable frames, so neither a clip boundary inside one nor
  `max_seconds` changes a frame's alignment.
  """
  parameters = np.full((len(analysis.problems), 4), np.nan)
  for run in runs(analysis.problems, analysis.scene_starts):
    if run.reason is None:
      window = slice(run.start, run.end)
      parameters[window] = face_align.track_parameters(
        analysis.faces[window], analysis.eyes[window]
      )
  return parameters


def _render(
  path: str,
  audio: np.ndarray,
  kept: list[Span],
  analysis: _Analysis,
  alignments: np.ndarray,
  settings: IngestSettings,
  meta: dict,
  report: dict,
) -> Iterator[clips.Clip]:
  """The second pass: every kept span's frames, cropped, as clips."""
  name = os.path.basename(path)
  size = settings.image_size
  frames, position = _frames(path, kept[-1].end), 0
  for index, span in enumerate(kept):
    # The frames are one stream: skip to the span's start, then take the span.
    span_frames = itertools.islice(frames, span.start - position, span.end - position)
    position = span.end
    aligned = alignments[span.start : span.end]
    if settings.crop == "clip":
      crop_parameters = np.broadcast_to(face_align.still_parameters(aligned), aligned.shape)
    else:
      crop_parameters = aligned
    crops = [
      face_align.aligned_crop(frame, parameters, size)
      for parameters, frame in zip(crop_parameters, span_frames)
    ]
    transforms = np.stack([face_align.crop_transform(p, size) for p in crop_parameters])
    eyes = np.einsum("tij,tej->tei", transforms[..., :2], face_align.eyes_of(aligned))
    eyes += transforms[:, None, :, 2]
    clip_id = f"{name}-{index:03d}"
    entry = {"clip_id": clip_id, "frames": [span.start, span.end]}
    report["clips"].append(entry if span.split is None else dict(entry, split=span.split))
    yield clips.Clip(
      frames=np.stack(crops),
      audio=audio[span.start * SAMPLES_PER_FRAME : span.end * SAMPLES_PER_FRAME].copy(),
      meta=dict(
        meta,
        clip_id=clip_id,
        start_seconds=span.start / FPS,
        first_frame=span.start,
        canonical_eyes=face_align.CANONICAL_EYES.tolist(),
        # The rest of the frames' eyes are placed by their face box (see face_align).
        eyes_found=sum(eyes is not None for eyes in analysis.eyes[span.start : span.end])
        / (span.end - span.start),
        crop=settings.crop,
        crop_transforms=np.round(transforms, _TRANSFORM_DECIMALS).tolist(),
        eyes=np.round(eyes, _EYE_DECIMALS).tolist(),
      ),
    )
