"""The training input pipeline: batches of random windows cut from clip shards, with grain.

Every step is a pure function of (seed, element index), so two iterators with the same arguments
yield the same batches, and an iterator's state is just its position: it can be saved as JSON in
a checkpoint and restored exactly. Each host reads its own slice of the clips.

Per epoch, every clip of this host's slice is visited `windows_per_clip` times in a shuffled
order (a new order each epoch); each visit decodes the clip and draws one window from it.
"""

from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from jaxtalk.data import clips
from jaxtalk.errors import UserError
from jaxtalk.timebase import SAMPLES_PER_FRAME

# A few threads read and cut clips ahead of the trainer; one batch of windows is buffered.
_READ_THREADS = 4
# Marks a clip too short for a window; dropped by `_SkipShortClips` (grain would drop a None
# silently, and then a dataset of only short clips would loop forever instead of failing).
_SHORT_CLIP = "clip shorter than a window"


class _ClipRecords:
  """Random access to (record index, decoded clip) over a list of shards, as a grain data source.

  Opening every shard up front turns a missing or damaged file into an error that names it
  before training starts, and the per-shard record counts let a bad record be traced to its file.
  """

  def __init__(self, paths: Sequence[str]):
    if not paths:
      raise UserError("no clip shards were given; point the data directory at a folder of shards")
    self._paths = list(paths)
    counts = []
    for path in self._paths:
      reader = clips.open_shard(path)
      counts.append(reader.num_records())
      reader.close()
    self._ends = np.cumsum(counts)
    self._source = grain.sources.ArrayRecordDataSource(self._paths)

  def __len__(self) -> int:
    return int(self._ends[-1])

  def __getitem__(self, index: int) -> tuple[int, clips.Clip]:
    shard = int(np.searchsorted(self._ends, index, side="right"))
    path, index_in_shard = self._paths[shard], index - (int(self._ends[shard - 1]) if shard else 0)
    try:
      data = self._source[index]
    except RuntimeError as e:  # the chunk checksum does not match: the file was damaged
      raise clips.corrupt_record_error(path, index_in_shard, e) from e
    return index, clips.decode_record(data, path, index_in_shard)


class _WindowSampler:
  """Cuts one random training window (plus a random reference frame) out of a clip."""

  def __init__(self, window_frames: int, audio_margin_frames: int):
    self.window_frames = window_frames
    self.audio_margin_frames = audio_margin_frames

  def __call__(
    self, indexed_clip: tuple[int, clips.Clip], rng: np.random.Generator
  ) -> dict[str, Any] | str:
    clip_index, clip = indexed_clip
    num_frames = clip.frames.shape[0]
    if num_frames < self.window_frames:
      return _SHORT_CLIP
    start = int(rng.integers(0, num_frames - self.window_frames + 1))
    reference = int(rng.integers(0, num_frames))
    end = start + self.window_frames
    # The audio of frames [start - margin, end + margin), silent where that runs past the clip.
    first_sample = (start - self.audio_margin_frames) * SAMPLES_PER_FRAME
    last_sample = (end + self.audio_margin_frames) * SAMPLES_PER_FRAME
    audio = np.zeros(last_sample - first_sample, np.float32)
    inside = slice(max(first_sample, 0), min(last_sample, clip.audio.shape[0]))
    audio[inside.start - first_sample : inside.stop - first_sample] = clip.audio[inside]
    window = {
      "frames": np.array(clip.frames[start:end]),
      "reference": np.array(clip.frames[reference]),
      "reference_index": np.int32(reference),
      "audio": audio,
      "clip_index": np.int32(clip_index),
      "start": np.int32(start),
    }
    if clip.motion is not None:
      window["motion"] = np.array(clip.motion[start:end], np.float32)
    return window


class _SkipShortClipsIterator(grain.DatasetIterator):
  """Drops windows of clips that were too short, and fails if no clip is long enough.

  With at least one long clip, any run of 2 epochs' worth of elements holds a whole epoch and so
  a window; a longer run of short clips (or a finite dataset of nothing but) means none is long.
  """

  def __init__(self, parent: grain.DatasetIterator, max_skipped_in_a_row: int, error: str):
    super().__init__(parent)
    self._max_skipped_in_a_row = max_skipped_in_a_row
    self._error = error
    self._skipped_in_a_row = 0

  def __next__(self) -> dict[str, Any]:
    while True:
      element = next(self._parent)
      if element is not _SHORT_CLIP:
        self._skipped_in_a_row = 0
        return element
      self._skipped_in_a_row += 1
      if self._skipped_in_a_row >= self._max_skipped_in_a_row:
        raise UserError(self._error)

  def get_state(self) -> dict[str, Any]:
    return self._parent.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    self._parent.set_state(state)
    self._skipped_in_a_row = 0


class _SkipShortClips(grain.IterDataset):
  def __init__(self, parent: grain.IterDataset, max_skipped_in_a_row: int, error: str):
    super().__init__(parent)
    self._max_skipped_in_a_row = max_skipped_in_a_row
    self._error = error

  def __iter__(self) -> _SkipShortClipsIterator:
    return _SkipShortClipsIterator(self._parent.__iter__(), self._max_skipped_in_a_row, self._error)


def _stack_windows(windows: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
  """Stacks windows into a batch, explaining the two ways shards can disagree."""
  keys = windows[0].keys()
  if any(window.keys() != keys for window in windows):
    raise UserError(
      "the shards mix clips with and without ground-truth motion; train on one kind at a time"
    )
  try:
    return {key: np.stack([window[key] for window in windows]) for key in keys}
  except ValueError as e:
    raise UserError(
      f"clips differ in frame size ({e}); make all shards with the same image size"
    ) from e


def window_dataset(
  paths: Sequence[str],
  *,
  window_frames: int,
  audio_margin_frames: int,
  batch_size: int,
  seed: int,
  shard_index: int = 0,
  shard_count: int = 1,
  windows_per_clip: int = 1,
  num_epochs: int | None = None,
) -> grain.IterDataset:
  """Batches of training windows from the clips in `paths`, this host's slice only.

  Each batch is a dict of numpy arrays (B = batch_size, W = window_frames, M =
  audio_margin_frames, spf = SAMPLES_PER_FRAME = 640):
    frames     uint8   [B, W, S, S, 3]  W consecutive frames from a random start
    reference  uint8   [B, S, S, 3]     a random frame of the same clip (the identity reference)
    reference_index int32 [B]           which frame of the clip that is
    audio      float32 [B, (W + 2M) * spf]  the audio of frames [start - M, start + W + M), zero
                                        outside the clip
    motion     float32 [B, W, P]        ground-truth motion, only when the clips carry it
    clip_index int32   [B]              the clip's record index across all of `paths`
    start      int32   [B]              the window's first frame in the clip
  Clips shorter than W frames are skipped. A last partial batch is dropped. `num_epochs=None`
  repeats forever.

  Hosts read disjoint slices (clips shard_index, shard_index + shard_count, ...), so with a finite
  num_epochs hosts may see a different number of batches; multi-host training runs forever and
  counts steps instead.
  """
  if window_frames < 1 or audio_margin_frames < 0 or batch_size < 1 or windows_per_clip < 1:
    raise ValueError(
      "window_frames, batch_size and windows_per_clip must be positive and audio_margin_frames "
      f"non-negative, got {window_frames}, {batch_size}, {windows_per_clip}, {audio_margin_frames}"
    )
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index must be in [0, shard_count={shard_count}), got {shard_index}")
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f"num_epochs must be positive or None, got {num_epochs}")
  records = _ClipRecords(paths)
  host_clips = grain.MapDataset.source(records)[shard_index::shard_count]
  if not len(host_clips):
    raise UserError(
      f"{len(records)} clips cannot feed {shard_count} hosts; make more clips or use fewer hosts"
    )
  epoch = host_clips.repeat(windows_per_clip).shuffle(seed)
  sampler = _WindowSampler(window_frames, audio_margin_frames)
  windows = epoch.repeat(num_epochs).random_map(sampler, seed=seed)
  windows = windows.to_iter_dataset(
    grain.ReadOptions(
      num_threads=_READ_THREADS, prefetch_buffer_size=max(batch_size, _READ_THREADS)
    )
  )
  max_skipped_in_a_row = len(epoch) * min(2, num_epochs or 2)
  error = (
    f"no clip in this host's slice of {len(paths)} shard(s) (first: {paths[0]}) has the "
    f"{window_frames} frames a training window needs; use longer clips or a shorter window"
  )
  windows = _SkipShortClips(windows, max_skipped_in_a_row, error)
  return windows.batch(batch_size, drop_remainder=True, batch_fn=_stack_windows)
