"""Which frames of a real video become clips: scene cuts, and runs of frames with a usable face.

A scene cut is a jump in the colour histogram of a downscaled frame: within a shot, even a moving
head changes it gradually, while a cut replaces the background, lighting and clothes at once. A
clip never crosses a cut. Inside a scene, a clip is a run of frames whose face the tracker found
usable (`face_track.frame_problem`), cut into pieces of at most the maximum length; every other
run of frames is dropped with the reason of its frames. A clip cropped still (one crop for all its
frames, `face_align.still_parameters`) also ends where its face would leave that crop: the next
clip starts there with a crop of its own, and pieces too short for a clip are dropped.
"""

import dataclasses
from collections.abc import Callable, Iterator

import cv2
import numpy as np

from jaxtalk.timebase import FPS

# The histogram is taken of a frame shrunk to this size, in this many bins per RGB channel.
_THUMBNAIL = (64, 48)
_BINS = 4
# A cut changes at least this fraction of the histogram's mass (total variation distance, 0 to 1).
# Measured on the test videos: consecutive frames of a moving, rolling, zooming head change it by
# under 0.05; a second face appearing over a quarter of the frame by 0.22; a cut to another
# photograph by 0.83. Cuts between shots of like colours go unseen here; the face tracker still
# stops a clip where the face jumps (`face_track`).
CUT_DISTANCE = 0.3
# Why frames are dropped, or a clip split off, where the face leaves a clip's still crop.
DRIFT = "face leaves the still crop"


@dataclasses.dataclass(frozen=True)
class Span:
  """Frames [start, end) at 25 fps, and why they were dropped (None for a clip).

  `split` is why a clip starts where the one before it ended early (None after a cut, the maximum
  length, or frames dropped).
  """

  start: int
  end: int
  reason: str | None = None
  split: str | None = None


class SceneCuts:
  """Feed it a video's frames in order; it says which start a new scene (the first one does)."""

  def __init__(self):
    self._previous: np.ndarray | None = None

  def starts_scene(self, frame: np.ndarray) -> bool:
    thumbnail = cv2.resize(frame, _THUMBNAIL, interpolation=cv2.INTER_AREA)
    bins = (thumbnail // (256 // _BINS)).reshape(-1, 3).astype(np.int64)
    histogram = np.bincount(
      (bins[:, 0] * _BINS + bins[:, 1]) * _BINS + bins[:, 2], minlength=_BINS**3
    )
    histogram = histogram / histogram.sum()
    previous, self._previous = self._previous, histogram
    return previous is None or 0.5 * np.abs(histogram - previous).sum() > CUT_DISTANCE


def split_spans(
  problems: list[str | None],
  scene_starts: list[bool],
  min_frames: int,
  max_frames: int,
  holds: Callable[[int, int], bool] | None = None,
) -> list[Span]:
  """The video's frames as consecutive spans: clips (reason None) and dropped spans with reasons.

  `problems[t]` is frame t's problem (None: usable), `scene_starts[t]` whether a scene starts at
  t. Clips hold `min_frames` to `max_frames` frames, one scene and no problem, and, given
  `holds(start, end)` (whether frames [start, end) keep their face inside one still crop), frames
  that hold. A run of usable frames too short for a clip right after a dropped span joins it: one
  reason for the stretch (a face lost, glimpsed at one detection and lost again) rather than a
  line per fragment.
  """
  spans: list[Span] = []
  for run in runs(problems, scene_starts):
    if run.reason is None and run.end - run.start < min_frames and spans and spans[-1].reason:
      run = Span(run.start, run.end, spans[-1].reason)
    if run.reason is None:
      spans.extend(_pieces(run, min_frames, max_frames, holds))
    elif spans and spans[-1].reason == run.reason and spans[-1].end == run.start:
      spans[-1] = Span(spans[-1].start, run.end, run.reason)
    else:
      spans.append(run)
  return spans


def runs(problems: list[str | None], scene_starts: list[bool]) -> Iterator[Span]:
  """Maximal runs of frames with one problem (or none) inside one scene."""
  start = 0
  for t in range(1, len(problems) + 1):
    if t == len(problems) or problems[t] != problems[start] or scene_starts[t]:
      yield Span(start, t, problems[start])
      start = t


def _pieces(
  run: Span, min_frames: int, max_frames: int, holds: Callable[[int, int], bool] | None
) -> list[Span]:
  """A usable run as consecutive clips of at most `max_frames` that hold, and the dropped pieces
  shorter than `min_frames` between and after them."""
  pieces: list[Span] = []
  start, drifted = run.start, False
  while start < run.end:
    limit = min(start + max_frames, run.end)
    # Grown frame by frame: the first frame that breaks the still crop starts the next piece.
    end = limit if holds is None else start + 1
    while end < limit and holds(start, end + 1):
      end += 1
    follows_clip = bool(pieces) and pieces[-1].reason is None
    if end - start >= min_frames:
      pieces.append(Span(start, end, split=DRIFT if drifted and follows_clip else None))
    else:
      if drifted or end < limit:
        reason = DRIFT
      elif start == run.start:
        reason = f"usable for only {(end - start) / FPS:.1f} s, under {min_frames / FPS:g} s"
      else:
        reason = f"tail shorter than {min_frames / FPS:g} s"
      if pieces and pieces[-1].reason == reason:
        pieces[-1] = Span(pieces[-1].start, end, reason)
      else:
        pieces.append(Span(start, end, reason))
    start, drifted = end, end < limit
  return pieces
