"""The training input pipeline: batches of random windows cut from clip shards, with grain.

Every window is a pure function of (seed, its index in one global sequence of windows), and global
batch j is windows [j * B, (j + 1) * B) of that sequence, whatever the number of hosts: host i of n
reads only rows [i * B/n, (i + 1) * B/n) of each. So a run on two hosts trains on exactly the
batches of a run on one, and an iterator's state is just its position: it can be saved as JSON in
a checkpoint and restored exactly.

Per epoch, every clip is visited `windows_per_clip` times in a shuffled order (a new order each
epoch); each visit reads the clip's head record (its audio and motion), draws one window from it
and reads and decodes only the pieces holding that window's frames and its reference frame
(`clips.StoredFrames`).
"""

from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from jaxtalk.data import clips
from jaxtalk.data.acting import ActingLayout
from jaxtalk.errors import UserError
from jaxtalk.timebase import SAMPLES_PER_FRAME

# A few threads read and cut clips ahead of the trainer; one batch of windows is buffered.
_READ_THREADS = 4


class _ClipRecords:
  """Random access to (clip index, stored clip) over a list of shards, as a grain data source.

  Opening every shard up front turns a missing or damaged file (or shard index) into an error
  that names it before training starts; the per-shard clip counts map a clip index to its shard.
  """

  def __init__(self, paths: Sequence[str]):
    if not paths:
      raise UserError("no clip shards were given; point the data directory at a folder of shards")
    self._shards = [clips.ClipShard(path) for path in paths]
    self._ends = np.cumsum([len(shard) for shard in self._shards])

  def __len__(self) -> int:
    return int(self._ends[-1])

  def __getitem__(self, index: int) -> tuple[int, clips.StoredClip]:
    shard = int(np.searchsorted(self._ends, index, side="right"))
    index_in_shard = index - (int(self._ends[shard - 1]) if shard else 0)
    return index, self._shards[shard].clip(index_in_shard)


class _WindowSampler:
  """Cuts one random training window (plus a random reference frame) out of a clip; decodes their
  frames only `with_frames`; reads the clip's acting per frame when given an `acting` layout."""

  def __init__(
    self,
    window_frames: int,
    audio_margin_frames: int,
    with_frames: bool,
    acting: ActingLayout | None = None,
  ):
    self.window_frames = window_frames
    self.audio_margin_frames = audio_margin_frames
    self.with_frames = with_frames
    self.acting = acting

  def __call__(
    self, indexed_clip: tuple[int, clips.StoredClip], rng: np.random.Generator
  ) -> dict[str, Any] | None:
    """The window, or None when the clip is shorter than one."""
    clip_index, clip = indexed_clip
    num_frames = len(clip.frames)
    if num_frames < self.window_frames:
      return None
    start = int(rng.integers(0, num_frames - self.window_frames + 1))
    reference = int(rng.integers(0, num_frames))
    end = start + self.window_frames
    # The audio of frames [start - margin, end + margin), silent where that runs past the clip.
    first_sample = (start - self.audio_margin_frames) * SAMPLES_PER_FRAME
    last_sample = (end + self.audio_margin_frames) * SAMPLES_PER_FRAME
    audio = np.zeros(last_sample - first_sample, np.float32)
    inside = max(first_sample, 0), min(last_sample, len(clip.pcm))
    audio[inside[0] - first_sample : inside[1] - first_sample] = clip.audio(*inside)
    window = {
      "reference_index": np.int32(reference),
      "audio": audio,
      "clip_index": np.int32(clip_index),
      "start": np.int32(start),
    }
    if self.with_frames:
      window["frames"] = clip.frames.read(start, end)
      window["reference"] = clip.frames.frame(reference)
    if clip.motion is not None:
      window["motion"] = np.array(clip.motion[start:end], np.float32)
    if self.acting is not None:
      window["acting"] = self.acting.track(clip.meta, num_frames)[start:end]
    return window


class _Windows(grain.MapDataset):
  """Window e of the global sequence: cut from the clip of visit e, with a generator seeded by
  (seed, e).

  A clip too short for a window passes its visit on to the next long enough clip in the visit
  order. Dropping the visit instead would make which windows form a batch depend on what each
  host dropped, and so on the number of hosts.
  """

  def __init__(
    self,
    visits: grain.MapDataset,
    epoch_length: int,
    sampler: _WindowSampler,
    seed: int,
    error: str,
  ):
    super().__init__(visits)
    self._visits, self._sampler, self._seed, self._error = visits, sampler, seed, error
    # Any epoch_length consecutive visits hold every clip (each epoch visits them all).
    self._max_tries = epoch_length

  def __len__(self) -> int:
    return len(self._visits)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    rng = np.random.default_rng((self._seed, index))
    for offset in range(self._max_tries):
      window = self._sampler(self._visits[(index + offset) % len(self._visits)], rng)
      if window is not None:
        return window
    raise UserError(self._error)

  def __str__(self) -> str:
    return "Windows"


class _HostRows(grain.MapDataset):
  """This host's share of every global batch: element k of host i is element
  (k // host_batch) * global_batch + i * host_batch + k % host_batch of the parent."""

  def __init__(self, parent: grain.MapDataset, global_batch: int, host_index: int, hosts: int):
    super().__init__(parent)
    self._global_batch, self._host_batch = global_batch, global_batch // hosts
    self._first_row = host_index * self._host_batch
    self._length = len(parent) // global_batch * self._host_batch

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    batch, row = divmod(index, self._host_batch)
    return self._parent[batch * self._global_batch + self._first_row + row]

  def __str__(self) -> str:
    return f"HostRows[{self._first_row}:+{self._host_batch} of {self._global_batch}]"


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
  with_frames: bool = True,
  acting: ActingLayout | None = None,
) -> grain.IterDataset:
  """Host `shard_index`'s rows of the global batches of training windows from the clips in `paths`.

  `batch_size` is the global batch; each host gets batch_size / shard_count rows of it (see the
  module docstring). Each batch is a dict of numpy arrays (B = this host's rows, W =
  window_frames, M = audio_margin_frames, spf = SAMPLES_PER_FRAME = 640):
    frames     uint8   [B, W, S, S, 3]  W consecutive frames from a random start
    reference  uint8   [B, S, S, 3]     a random frame of the same clip (the identity reference)
    reference_index int32 [B]           which frame of the clip that is
    audio      float32 [B, (W + 2M) * spf]  the audio of frames [start - M, start + W + M), zero
                                        outside the clip
    motion     float32 [B, W, P]        ground-truth motion, only when the clips carry it
    clip_index int32   [B]              the clip's index across all of `paths` (`read_clips` order)
    start      int32   [B]              the window's first frame in the clip
    acting     float32 [B, W, A]        each frame's acting controls, only given an `acting`
                                        layout (`jaxtalk.data.acting`; zeros where the clip's
                                        meta says nothing)
  Only the frames a batch holds are decoded; `with_frames=False` leaves out frames and reference
  and decodes none, for a stage that looks up what it trains on by clip_index, start and
  reference_index (stage 2's motion latents). Clips shorter than W frames give their visits to the
  next clip that is long enough. A last partial global batch is dropped. `num_epochs=None` repeats
  forever.
  """
  if window_frames < 1 or audio_margin_frames < 0 or batch_size < 1 or windows_per_clip < 1:
    raise ValueError(
      "window_frames, batch_size and windows_per_clip must be positive and audio_margin_frames "
      f"non-negative, got {window_frames}, {batch_size}, {windows_per_clip}, {audio_margin_frames}"
    )
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index must be in [0, shard_count={shard_count}), got {shard_index}")
  if batch_size % shard_count:
    raise ValueError(f"a global batch of {batch_size} does not split over {shard_count} hosts")
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f"num_epochs must be positive or None, got {num_epochs}")
  records = _ClipRecords(paths)
  epoch = grain.MapDataset.source(records).repeat(windows_per_clip).shuffle(seed)
  error = (
    f"no clip in {len(paths)} shard(s) (first: {paths[0]}) has the {window_frames} frames a "
    f"training window needs; use longer clips or a shorter window"
  )
  sampler = _WindowSampler(window_frames, audio_margin_frames, with_frames, acting)
  windows = _Windows(epoch.repeat(num_epochs), len(epoch), sampler, seed, error)
  rows = _HostRows(windows, batch_size, shard_index, shard_count)
  host_batch = batch_size // shard_count
  rows = rows.to_iter_dataset(
    grain.ReadOptions(
      num_threads=_READ_THREADS, prefetch_buffer_size=max(host_batch, _READ_THREADS)
    )
  )
  return rows.batch(host_batch, drop_remainder=True, batch_fn=_stack_windows)
