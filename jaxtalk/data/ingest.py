"""Real talking-head videos -> clip shards, in the same format the SynthTalk generator writes.

  python -m jaxtalk.data.ingest --videos DIR --out DIR [--image-size 64] [--split train] [--max-seconds 60]

Every mp4 / mov / mkv / webm file in the folder becomes one clip per `max_seconds` of video: frames
resampled to 25 fps, audio to 16 kHz mono, and every frame cropped to the same face-centred square
(one crop per clip, so the head moves inside a still frame as in the SynthTalk clips) and resized
to `image_size`. A video without an audio track, without a face, or too short is skipped with a
one-line reason, and the rest are still ingested.
"""

import dataclasses
import math
import os
import sys
from collections.abc import Callable, Iterator

import numpy as np

from jaxtalk.cli import argument_parser, run_command
from jaxtalk.data import clips
from jaxtalk.errors import UserError
from jaxtalk.media import audio_io, face_detect, image_io, video_io
from jaxtalk.timebase import FPS, SAMPLES_PER_FRAME, frames_of

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")
# The face box is the median over this many frames spread across the clip, so one missed or
# spurious detection does not move the crop; a face is required in at least half of them.
DETECTION_FRAMES = 5
# Shorter tails of long videos are dropped: too little motion to learn from.
MIN_CLIP_SECONDS = 1.0


class _Skip(Exception):
  """A video (or a part of one) that cannot become a clip; the message is the one-line reason."""


@dataclasses.dataclass
class IngestSummary:
  """What `ingest_folder` did."""

  shards: list[str]
  clips: int
  seconds: float  # total length of the clips written
  skipped: list[tuple[str, str]]  # (video file or "file [start-end s]", reason)


def _stable_crop_box(path: str, start: float, seconds: float) -> face_detect.Box:
  """The clip's one square crop: the median face box over a few frames, enlarged and placed in the frame."""
  sampled = list(
    video_io.iter_frames(
      path, fps=DETECTION_FRAMES / seconds, start_seconds=start, max_seconds=seconds
    )
  )[:DETECTION_FRAMES]
  if not sampled:
    raise _Skip("no frames could be decoded")
  faces = [face for face in map(face_detect.detect_face, sampled) if face is not None]
  if not faces:
    raise _Skip("no face found")
  if 2 * len(faces) < len(sampled):
    raise _Skip(f"a face in only {len(faces)} of {len(sampled)} sampled frames")
  median = face_detect.Box(*(round(float(np.median(values))) for values in zip(*faces)))
  height, width = sampled[0].shape[:2]
  return face_detect.face_crop_box(median, height, width)


def _segment_clip(
  path: str, audio: np.ndarray, first_frame: int, num_frames: int, image_size: int, meta: dict
) -> clips.Clip:
  """The clip of frames [first_frame, first_frame + num_frames) at 25 fps, and the audio under them."""
  start, seconds = first_frame / FPS, num_frames / FPS
  box = _stable_crop_box(path, start, seconds)
  frames = [
    image_io.resize_square(face_detect.crop_square(frame, box), image_size)
    for frame in video_io.iter_frames(path, fps=FPS, start_seconds=start, max_seconds=seconds)
  ]
  if not frames:
    raise _Skip("no frames could be decoded")
  # The decoder may stop a frame short of the container's length
  num_frames = min(num_frames, len(frames))
  audio = audio[first_frame * SAMPLES_PER_FRAME : (first_frame + num_frames) * SAMPLES_PER_FRAME]
  return clips.Clip(
    frames=np.stack(frames[:num_frames]),
    audio=audio.copy(),
    meta=dict(meta, start_seconds=start, crop_box=list(box)),
  )


def _video_clips(
  path: str, image_size: int, split: str, max_seconds: float, skip: Callable[[str, str], None]
) -> Iterator[clips.Clip]:
  """The clips of one video, one per `max_seconds` segment; a segment that fails is reported and left out."""
  name = os.path.basename(path)
  info = video_io.probe_video(path)
  if not info.has_audio:
    raise _Skip("no audio track")
  audio = audio_io.load_audio(path)
  # Frames at 25 fps that both the picture and the sound cover.
  total_frames = min(math.floor(info.num_frames / info.fps * FPS), frames_of(audio.size))
  min_frames = math.ceil(MIN_CLIP_SECONDS * FPS)
  if total_frames < min_frames:
    raise _Skip(f"only {total_frames / FPS:.1f} s long; need at least {MIN_CLIP_SECONDS:g} s")
  segment_frames = math.floor(max_seconds * FPS)
  num_segments = math.ceil(total_frames / segment_frames)
  for index in range(num_segments):
    first_frame = index * segment_frames
    num_frames = min(segment_frames, total_frames - first_frame)
    end_seconds = (first_frame + num_frames) / FPS
    label = name if num_segments == 1 else f"{name} [{first_frame / FPS:.0f}-{end_seconds:.0f} s]"
    if num_frames < min_frames:
      skip(label, f"tail shorter than {MIN_CLIP_SECONDS:g} s")
      continue
    meta = {
      "clip_id": f"{name}-{index:03d}",
      "identity_id": f"video:{name}",
      "source": f"video:{name}",
      "split": split,
      "source_fps": info.fps,
      "source_size": [info.width, info.height],
    }
    try:
      yield _segment_clip(path, audio, first_frame, num_frames, image_size, meta)
    except _Skip as reason:
      skip(label, str(reason))


def ingest_folder(
  video_dir: str,
  out_dir: str,
  image_size: int = 64,
  split: str = "train",
  max_seconds: float = 60.0,
  log: Callable[[str], None] = print,
) -> IngestSummary:
  """Turns every video in `video_dir` into clips in `{split}-*.array_record` shards under `out_dir`.

  Each skipped video (or segment) is reported through `log` as "skip NAME: REASON". Raises
  UserError if the folder is missing or holds no videos, or if `out_dir` already has this split.
  """
  if not os.path.isdir(video_dir):
    raise UserError(
      f"video folder {video_dir} does not exist; give a folder of mp4, mov, mkv or webm files"
    )
  if image_size < 8 or max_seconds < MIN_CLIP_SECONDS:
    raise UserError(
      f"need --image-size >= 8 and --max-seconds >= {MIN_CLIP_SECONDS:g}, got {image_size} and "
      f"{max_seconds:g}"
    )
  paths = sorted(
    os.path.join(video_dir, name)
    for name in os.listdir(video_dir)
    if name.lower().endswith(VIDEO_SUFFIXES) and os.path.isfile(os.path.join(video_dir, name))
  )
  if not paths:
    raise UserError(f"no {', '.join(VIDEO_SUFFIXES)} files in {video_dir}")
  skipped: list[tuple[str, str]] = []
  written = {"clips": 0, "frames": 0}

  def skip(label: str, reason: str) -> None:
    skipped.append((label, reason))
    log(f"skip {label}: {reason}")

  def all_clips() -> Iterator[clips.Clip]:
    for path in paths:
      try:
        for clip in _video_clips(path, image_size, split, max_seconds, skip):
          written["clips"] += 1
          written["frames"] += clip.frames.shape[0]
          yield clip
      except (_Skip, UserError) as reason:  # UserError: unreadable file, silent audio, ...
        skip(os.path.basename(path), str(reason))

  shards = clips.write_shards(all_clips(), out_dir, split)
  return IngestSummary(
    shards=shards, clips=written["clips"], seconds=written["frames"] / FPS, skipped=skipped
  )


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
    help="longer videos are cut into consecutive clips of at most this length",
  )
  return run_command(_ingest_command, parser.parse_args(argv))


def _ingest_command(args) -> None:
  summary = ingest_folder(args.videos, args.out, args.image_size, args.split, args.max_seconds)
  print(
    f"{args.split}: {summary.clips} clips ({summary.seconds:.1f} s) at {args.image_size}x"
    f"{args.image_size} -> {len(summary.shards)} shards in {args.out}; skipped {len(summary.skipped)}"
  )


if __name__ == "__main__":
  sys.exit(main())
