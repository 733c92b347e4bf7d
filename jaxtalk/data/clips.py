"""The clip container: talking-head clips in ArrayRecord shard files, many clips per shard.

Every data source (the SynthTalk generator, the real-video preprocessor) writes clips with
`write_shards`, and everything downstream (the training pipeline, evaluation) reads them back, so
this file is the one place that knows the byte layout.

A clip is a run of consecutive records of one shard, self-describing and free of pickle: a head
record, then its frames in piece records of `PIECE_FRAMES` frames each (the last may be shorter):

  head:  MAGIC | header length (uint32, little endian) | header (UTF-8 JSON) | array buffers
  piece: PIECE_MAGIC | its frames, encoded, one after another

The header holds the format version, fps, sample rate, the clip's metadata, the frames' codec
(`jaxtalk.data.frame_codecs`: raw, or a JPEG per frame at a recorded quality), shape, frames per
piece and the byte size of every encoded frame, and for every other array its dtype and shape.
So any frame can be found and decoded alone (`StoredFrames`), and a training window reads only the
head and the pieces that hold its frames: a 60-s clip of 256x256 JPEG frames is some 49 MB, of
which a window of one frame needs one 0.8 MB piece. Audio is 16-bit PCM (half the size of
float32, and the precision of the sources it comes from), motion and identity parameters are
float32; they stay in the head, which a window needs anyway (60 s of audio is 1.9 MB). The rates
are always jaxtalk's 25 fps and 16 kHz (`jaxtalk.timebase`); storing them keeps a record
self-describing, and lets a reader refuse data made at other rates instead of misaligning it.

A shard's last record is its index: INDEX_MAGIC and the record number of every clip's head
(uint64, little endian), so opening a shard reads one small record however long its clips
(`ClipShard`); clips are numbered within a shard and across shards, never by record.

Older shards still read: there every record is one whole clip, whose frames follow its header
(version 2: encoded by the codec the header names, sizes indexed) or are one raw uint8 buffer
listed first among its arrays (version 1).
"""

import dataclasses
import glob
import itertools
import json
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
from array_record.python import array_record_module

from jaxtalk.data.frame_codecs import JPEG, RAW, FrameCodec
from jaxtalk.errors import UserError
from jaxtalk.timebase import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME

FORMAT_VERSION = 3
# Version 1 held raw frames as the first of its arrays, with no per-frame index; version 2 held
# every frame encoded in the clip's one record.
_RAW_FRAMES_VERSION, _ONE_RECORD_VERSION = 1, 2
# Frames per piece record, by measurement (gpu256's 256x256 photo-like JPEG frames, 60-s clips,
# one shared core): a stage-1 window reads the head (1.9 MB of audio, 3-8 ms) and decodes a frame
# and its reference, 6.9-8.8 ms alike from pieces of 5, 10, 25 or 50 frames; 25 (one second,
# 0.8 MB) keeps a 60-s clip at 61 records, cheap for a shard's index and ArrayRecord's footer.
PIECE_FRAMES = 25
_MAGIC = b"JAXTALK\x00"
_PIECE_MAGIC = b"JAXTALKP"
_INDEX_MAGIC = b"JAXTALKI"
_HEADER_LENGTH = struct.Struct("<I")
_INDEX_DTYPE = np.dtype("<u8")
_PCM_SCALE = 32767.0
# Stored dtype of every array besides the frames, in buffer order; motion and identity are optional.
_STORED_DTYPES = {"audio": "<i2", "motion": "<f4", "identity": "<f4"}
_RAW_FRAMES_DTYPE = "|u1"
# One record per chunk, so the data loader can read any record without decoding its neighbours.
# ArrayRecord's own compression (zstd) shrinks raw frames but not JPEG bytes, whose reading it
# would only slow down.
_WRITER_OPTIONS = {"raw": "group_size:1", "jpeg": "group_size:1,uncompressed"}
# A window reads a few records at random places: read-ahead would only read bytes it throws away.
_READER_OPTIONS = "readahead_buffer_size:0"
_SHARD_SUFFIX = ".array_record"


@dataclasses.dataclass
class Clip:
  """One talking-head clip: frames, the speech that goes with them, and what is known about it.

  In a clip returned by `decode_clip`, motion and identity are read-only views into the record;
  copy them before editing in place.
  """

  frames: np.ndarray  # [T, S, S, 3] uint8, square frames
  audio: np.ndarray  # [T * SAMPLES_PER_FRAME] float32 in [-1, 1], mono
  meta: dict  # json-serialisable: clip_id, identity_id, utterance_id, emotion, source, split, ...
  motion: np.ndarray | None = None  # [T, P] float32 ground-truth motion (SynthTalk only)
  identity: np.ndarray | None = None  # [Q] float32 identity parameters (SynthTalk only)


# (first, stop) -> the encoded frames of pieces [first, stop), each piece's back to back;
# ValueError if one cannot be read.
ReadPieces = Callable[[int, int], list[memoryview]]


class StoredFrames:
  """A clip's frames, still encoded: any range of them decodes without the others, reading only
  the pieces that hold them.

  `origin` (shard path, clip index) names the clip in the error a piece that cannot be read or a
  frame that does not decode raises (a UserError); without it the error is a ValueError.
  """

  def __init__(
    self,
    codec: FrameCodec,
    shape: tuple[int, ...],
    sizes: Sequence[int],
    piece_frames: int,
    read_pieces: ReadPieces,
    origin: tuple[str, int] | None = None,
  ):
    self.codec, self.shape, self.piece_frames = codec, shape, piece_frames
    self._bounds = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    self._read_pieces, self._origin = read_pieces, origin

  def __len__(self) -> int:
    return self.shape[0]

  def read(self, start: int, stop: int) -> np.ndarray:
    """Frames [start, stop) as a new [stop - start, S, S, 3] uint8 array."""
    if not 0 <= start <= stop <= len(self):
      raise IndexError(f"frames [{start}, {stop}) are not within the clip's {len(self)}")
    frames = np.empty((stop - start, *self.shape[1:]), np.uint8)
    if start == stop:
      return frames
    first, stop_piece = start // self.piece_frames, (stop - 1) // self.piece_frames + 1
    try:
      pieces = self._read_pieces(first, stop_piece)
    except ValueError as e:
      raise self._error(e) from e
    for piece, data in zip(range(first, stop_piece), pieces):
      piece_start = piece * self.piece_frames
      piece_stop = min(piece_start + self.piece_frames, len(self))
      base, expected = self._bounds[piece_start], self._bounds[piece_stop]
      if len(data) != expected - base:
        error = ValueError(
          f"piece {piece} holds {len(data)} bytes of frames, not {expected - base}"
        )
        raise self._error(error)
      for i in range(max(start, piece_start), min(stop, piece_stop)):
        frames[i - start] = self._decode(
          i, data[self._bounds[i] - base : self._bounds[i + 1] - base]
        )
    return frames

  def frame(self, index: int) -> np.ndarray:
    """Frame `index` as a new [S, S, 3] uint8 array."""
    return self.read(index, index + 1)[0]

  def _decode(self, index: int, encoded: memoryview) -> np.ndarray:
    try:
      return self.codec.decode(encoded, self.shape[1])
    except ValueError as e:
      raise self._error(ValueError(f"frame {index} does not decode: {e}")) from e

  def _error(self, error: ValueError) -> Exception:
    return error if self._origin is None else corrupt_clip_error(*self._origin, error)


@dataclasses.dataclass
class StoredClip:
  """A clip as read from its head record: frames, which are read and decoded on demand, audio as
  stored (16-bit PCM), converted on demand, and the rest.

  pcm, motion and identity are read-only views into the head record.
  """

  frames: StoredFrames
  pcm: np.ndarray  # [T * SAMPLES_PER_FRAME] int16, audio times 32767
  meta: dict
  motion: np.ndarray | None = None
  identity: np.ndarray | None = None

  def audio(self, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Samples [start, stop) of the audio as a new float32 array in [-1, 1]: converting only
    those keeps a window of a long clip cheap."""
    return self.pcm[start:stop].astype(np.float32) / np.float32(_PCM_SCALE)

  def decoded(self) -> Clip:
    """The clip with all its frames decoded."""
    return Clip(
      frames=self.frames.read(0, len(self.frames)),
      audio=self.audio(),
      meta=self.meta,
      motion=self.motion,
      identity=self.identity,
    )


def _check_frames_shape(shape) -> None:
  if len(shape) != 4 or shape[0] < 1 or shape[1] != shape[2] or shape[3] != 3:
    raise ValueError(f"clip frames must have shape [T>=1, S, S, 3], got {tuple(shape)}")


def _check_audio(num_frames: int, audio) -> None:
  """Raises ValueError unless audio fits a clip of num_frames frames."""
  if not isinstance(audio, np.ndarray) or audio.dtype != np.float32:
    raise ValueError(
      f"clip audio must be a float32 array, got {getattr(audio, 'dtype', type(audio))}"
    )
  expected_samples = num_frames * SAMPLES_PER_FRAME
  if audio.shape != (expected_samples,):
    raise ValueError(
      f"clip audio must be mono with {expected_samples} samples ({num_frames} frames at {FPS} fps, "
      f"{SAMPLE_RATE} Hz), got shape {audio.shape}"
    )
  if audio.size and not (np.all(np.isfinite(audio)) and np.abs(audio).max() <= 1.0):
    raise ValueError("clip audio must be finite and within [-1, 1]")


def _check_companions(num_frames: int, meta, motion, identity) -> None:
  """Raises ValueError unless meta, motion and identity fit a clip of num_frames frames."""
  if not isinstance(meta, dict):
    raise ValueError(f"clip meta must be a dict, got {type(meta).__name__}")
  try:
    json.dumps(meta, allow_nan=False)
  except (TypeError, ValueError) as e:
    raise ValueError(f"clip meta must be JSON-serialisable: {e}") from e
  for name, array, ndim in (("motion", motion, 2), ("identity", identity, 1)):
    if array is None:
      continue
    if not isinstance(array, np.ndarray) or array.dtype != np.float32 or array.ndim != ndim:
      got = (
        f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
      )
      raise ValueError(f"clip {name} must be a {ndim}-d float32 array, got {got}")
  if motion is not None and motion.shape[0] != num_frames:
    raise ValueError(
      f"clip motion must have one row per frame ({num_frames}), got shape {motion.shape}"
    )


def _validate(clip: Clip) -> None:
  """Raises ValueError unless every field has the shape and dtype the format promises."""
  frames = clip.frames
  if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
    raise ValueError(
      f"clip frames must be a uint8 array, got {getattr(frames, 'dtype', type(frames))}"
    )
  _check_frames_shape(frames.shape)
  _check_audio(frames.shape[0], clip.audio)
  _check_companions(frames.shape[0], clip.meta, clip.motion, clip.identity)


def encode_clip(clip: Clip, frame_codec: FrameCodec = JPEG) -> list[bytes]:
  """Serialises a clip into its records (head, then pieces), each frame stored with
  `frame_codec`; raises ValueError if the clip is malformed."""
  _validate(clip)
  encoded_frames = [frame_codec.encode(frame) for frame in clip.frames]
  arrays = {
    "audio": np.round(clip.audio * _PCM_SCALE),
    "motion": clip.motion,
    "identity": clip.identity,
  }
  buffers, specs = [], {}
  for name, array in arrays.items():
    if array is None:
      continue
    stored = np.ascontiguousarray(array, dtype=_STORED_DTYPES[name])
    specs[name] = {"dtype": _STORED_DTYPES[name], "shape": list(stored.shape)}
    buffers.append(stored.tobytes())
  frames_entry = {
    **frame_codec.header(),
    "shape": list(clip.frames.shape),
    "piece_frames": PIECE_FRAMES,
    "sizes": [len(frame) for frame in encoded_frames],
  }
  header = json.dumps(
    {
      "format_version": FORMAT_VERSION,
      "fps": FPS,
      "sample_rate": SAMPLE_RATE,
      "meta": clip.meta,
      "frames": frames_entry,
      "arrays": specs,
    }
  ).encode("utf-8")
  head = b"".join([_MAGIC, _HEADER_LENGTH.pack(len(header)), header, *buffers])
  pieces = [
    b"".join([_PIECE_MAGIC, *encoded_frames[i : i + PIECE_FRAMES]])
    for i in range(0, len(encoded_frames), PIECE_FRAMES)
  ]
  return [head, *pieces]


def _read_header(data: bytes) -> tuple[dict, int]:
  """(the head record's header, where its buffers start); refuses unknown versions and other
  rates."""
  prefix = len(_MAGIC) + _HEADER_LENGTH.size
  if len(data) < prefix or data[: len(_MAGIC)] != _MAGIC:
    raise ValueError("not a jaxtalk clip record (bad magic bytes)")
  (header_length,) = _HEADER_LENGTH.unpack_from(data, len(_MAGIC))
  try:
    header = json.loads(bytes(data[prefix : prefix + header_length]).decode("utf-8"))
    version = header["format_version"]
    rates = header["fps"], header["sample_rate"]
  except (UnicodeDecodeError, ValueError, TypeError, KeyError) as e:
    raise ValueError(f"clip record header is unreadable: {e}") from e
  if version not in (_RAW_FRAMES_VERSION, _ONE_RECORD_VERSION, FORMAT_VERSION):
    raise ValueError(
      f"clip record has format version {version}, this jaxtalk reads versions "
      f"{_RAW_FRAMES_VERSION} to {FORMAT_VERSION}"
    )
  if rates != (FPS, SAMPLE_RATE):
    meta = header.get("meta")
    name = meta.get("clip_id", "?") if isinstance(meta, dict) else "?"
    raise UserError(
      f"clip {name} is {rates[0]} fps / {rates[1]} Hz, but jaxtalk works at 25 fps / 16 kHz; "
      "remake the data"
    )
  return header, prefix + header_length


def _is_shape(shape) -> bool:
  return isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)


def _frames_layout(header: dict, specs: dict) -> tuple[FrameCodec, list, list, int | None]:
  """(codec, shape, encoded size of every frame, frames per piece or None when the frames follow
  the header in the same record) of the clip's frames.

  A version 1 record's raw frames are its first array: popped from `specs`.
  """
  if header["format_version"] == _RAW_FRAMES_VERSION:
    spec = specs.pop("frames", None)
    shape = spec.get("shape") if isinstance(spec, dict) else None
    if not _is_shape(shape) or spec.get("dtype") != _RAW_FRAMES_DTYPE:
      raise ValueError(f"clip record has a malformed frames entry: {spec}")
    _check_frames_shape(shape)
    return RAW, shape, [shape[1] * shape[2] * shape[3]] * shape[0], None
  entry = header.get("frames")
  if not isinstance(entry, dict):
    raise ValueError(f"clip record has a malformed frames entry: {entry}")
  codec = FrameCodec.from_header(entry)
  shape, sizes = entry.get("shape"), entry.get("sizes")
  piece_frames = None
  if header["format_version"] == FORMAT_VERSION:
    piece_frames = entry.get("piece_frames")
    if not (isinstance(piece_frames, int) and piece_frames >= 1):
      raise ValueError(f"clip record has a malformed frames entry: {entry}")
  if not (_is_shape(shape) and _is_shape(sizes)):
    raise ValueError(f"clip record has a malformed frames entry: {entry}")
  _check_frames_shape(shape)
  if len(sizes) != shape[0]:
    raise ValueError(f"clip record lists {len(sizes)} frame sizes for {shape[0]} frames")
  return codec, shape, sizes, piece_frames


def _piece_reader(pieces: Sequence[bytes]) -> ReadPieces:
  """Reads pieces from `pieces` (a list, or a shard's records read on demand: `_ShardPieces`)."""

  def read(first: int, stop: int) -> list[memoryview]:
    frames = []
    for number, record in zip(range(first, stop), pieces[first:stop]):
      if record[: len(_PIECE_MAGIC)] != _PIECE_MAGIC:
        raise ValueError(f"record of piece {number} is no piece of a clip (bad magic bytes)")
      frames.append(memoryview(record)[len(_PIECE_MAGIC) :])
    return frames

  return read


def open_clip(
  head: bytes, pieces: Sequence[bytes] = (), origin: tuple[str, int] | None = None
) -> StoredClip:
  """Parses a clip from its head record and piece records (as `encode_clip` makes them; a
  version 1 or 2 record has none), leaving its frames encoded, and the pieces unread, until
  frames are read.

  Raises ValueError if they are no valid clip, and UserError if it is one made at other rates than
  jaxtalk's. `origin` is for `StoredFrames`' errors.
  """
  header, offset = _read_header(head)
  specs = header.get("arrays")
  if not isinstance(specs, dict):
    raise ValueError(f"clip record has a malformed arrays entry: {specs}")
  specs = dict(specs)
  codec, shape, sizes, piece_frames = _frames_layout(header, specs)
  if not {"audio"} <= specs.keys() <= _STORED_DTYPES.keys():
    raise ValueError(
      f"clip record holds arrays {sorted(specs)}, expected audio[, motion, identity]"
    )
  expected_pieces = 0 if piece_frames is None else -(-shape[0] // piece_frames)
  if len(pieces) != expected_pieces:
    raise ValueError(f"clip has {len(pieces)} piece records, its header says {expected_pieces}")
  if piece_frames is None:  # the frames follow the header: one piece, in this record
    frames_bytes = memoryview(head)[offset : offset + sum(sizes)]
    offset += sum(sizes)
    if offset > len(head):
      raise ValueError("clip record is truncated inside its frames")
    read_pieces = lambda first, stop: [frames_bytes]  # noqa: E731
    piece_frames = shape[0]
  else:
    read_pieces = _piece_reader(pieces)
  arrays = {}
  for name in _STORED_DTYPES:  # buffers follow in this fixed order
    if name not in specs:
      continue
    spec, dtype = specs[name], np.dtype(_STORED_DTYPES[name])
    array_shape = spec.get("shape") if isinstance(spec, dict) else None
    if not _is_shape(array_shape) or spec.get("dtype") != _STORED_DTYPES[name]:
      raise ValueError(f"clip record has a malformed {name} entry: {spec}")
    count = int(np.prod(array_shape))
    if offset + count * dtype.itemsize > len(head):
      raise ValueError(f"clip record is truncated inside its {name} buffer")
    arrays[name] = np.frombuffer(head, dtype=dtype, count=count, offset=offset).reshape(array_shape)
    offset += count * dtype.itemsize
  if offset != len(head):
    raise ValueError(f"clip record has {len(head) - offset} unexpected trailing bytes")
  pcm = arrays["audio"]
  if pcm.shape != (shape[0] * SAMPLES_PER_FRAME,):
    raise ValueError(
      f"clip audio must be mono with {shape[0] * SAMPLES_PER_FRAME} samples for {shape[0]} "
      f"frames, got shape {pcm.shape}"
    )
  if pcm.size and pcm.min() < -_PCM_SCALE:  # the one int16 value outside [-1, 1]
    raise ValueError("clip audio must be within [-1, 1]")
  clip = StoredClip(
    frames=StoredFrames(codec, tuple(shape), sizes, piece_frames, read_pieces, origin),
    pcm=pcm,
    meta=header.get("meta"),
    motion=arrays.get("motion"),
    identity=arrays.get("identity"),
  )
  _check_companions(shape[0], clip.meta, clip.motion, clip.identity)
  return clip


def decode_clip(records: Sequence[bytes]) -> Clip:
  """The clip in `records` (head first, as `encode_clip` gives them), all frames decoded:
  ValueError also if a frame does not decode."""
  return open_clip(records[0], records[1:]).decoded()


def _shard_name(split: str, index: int) -> str:
  return f"{split}-{index:05d}{_SHARD_SUFFIX}"


def _existing_shards(data_dir: str, split: str) -> list[str]:
  pattern = f"{glob.escape(split)}-[0-9][0-9][0-9][0-9][0-9]{_SHARD_SUFFIX}"
  return sorted(glob.glob(os.path.join(glob.escape(data_dir), pattern)))


def write_shards(
  clips: Iterable[Clip],
  out_dir: str,
  split: str,
  clips_per_shard: int = 32,
  frame_codec: FrameCodec = JPEG,
) -> list[str]:
  """Writes clips into `{split}-{i:05d}.array_record` shards in out_dir; returns their paths.

  Frames are stored with `frame_codec`: by default a high-quality JPEG each, which suits frames cut
  from real (already lossy) video; `frame_codecs.RAW` keeps exact pixels. Clips are streamed: only
  one is held in memory at a time. Each shard is written under a temporary name and renamed when
  complete, so an interrupted run leaves no half-written shard that a reader would take for a
  whole one.
  """
  if clips_per_shard < 1:
    raise ValueError(f"clips_per_shard must be at least 1, got {clips_per_shard}")
  if not split or os.sep in split:
    raise ValueError(f"split must be a plain name such as 'train', got {split!r}")
  os.makedirs(out_dir, exist_ok=True)
  if _existing_shards(out_dir, split):
    raise UserError(
      f"{out_dir} already holds {split} shards; delete them or choose another output folder"
    )
  clip_iterator = iter(clips)
  paths: list[str] = []
  for first_clip in clip_iterator:
    path = os.path.join(out_dir, _shard_name(split, len(paths)))
    shard_clips = itertools.chain(
      [first_clip], itertools.islice(clip_iterator, clips_per_shard - 1)
    )
    _write_shard(path, shard_clips, frame_codec)
    paths.append(path)
  return paths


def _write_shard(path: str, shard_clips: Iterable[Clip], frame_codec: FrameCodec) -> None:
  """Writes one shard, its clips' records and then its index, under a temporary name, and renames
  it into place only once it is complete."""
  temp_path = f"{path}.tmp-{os.getpid()}"
  writer = array_record_module.ArrayRecordWriter(temp_path, _WRITER_OPTIONS[frame_codec.name])
  heads, written = [], 0
  try:
    for clip in shard_clips:
      heads.append(written)
      for record in encode_clip(clip, frame_codec):
        writer.write(record)
        written += 1
    writer.write(_INDEX_MAGIC + np.asarray(heads, _INDEX_DTYPE).tobytes())
  except BaseException:
    writer.close()
    os.remove(temp_path)
    raise
  writer.close()
  os.replace(temp_path, path)


def shard_paths(data_dir: str, split: str) -> list[str]:
  """The sorted shard files of one split in data_dir; UserError if there are none."""
  if not os.path.isdir(data_dir):
    raise UserError(
      f"data folder {data_dir} does not exist; make clips with the SynthTalk generator or the "
      "video preprocessor, or point the data directory at an existing folder"
    )
  paths = _existing_shards(data_dir, split)
  if not paths:
    raise UserError(
      f"no {split} shards in {data_dir}; run the SynthTalk generator or the video preprocessor "
      "to make them"
    )
  return paths


def corrupt_clip_error(path: str, index: int, cause: Exception) -> UserError:
  """The error for a clip that cannot be read back, naming its shard so the user can regenerate
  it."""
  return UserError(f"clip {index} of clip shard {path} is corrupt ({cause}); regenerate the data")


class ClipShard:
  """A shard open for random access by clip: `len` clips, `clip(i)` the i-th.

  Opening reads the shard's index, its last record (8 bytes a clip), and ArrayRecord's own
  footer. A shard written before version 3 has no index and one record per clip; telling so reads
  its last clip once. Raises UserError naming the file if it is missing or not a shard. Reads are
  safe from several threads at once.
  """

  def __init__(self, path: str):
    if not os.path.isfile(path):
      raise UserError(f"clip shard {path} does not exist; check the data directory")
    self.path = path
    self._reader = array_record_module.ArrayRecordReader(path, _READER_OPTIONS)
    if not self._reader.ok():
      raise UserError(
        f"clip shard {path} is corrupt or not an ArrayRecord file; delete it and regenerate the data"
      )
    # Record number of every clip's head, then of the index (or the record count): clip i is
    # records [heads[i], heads[i + 1]).
    self._heads = self._read_index()

  def _read_index(self) -> np.ndarray:
    count = self._reader.num_records()
    if count == 0:
      return np.zeros(1, np.int64)
    try:
      (last,) = self._reader.read([count - 1])
    except RuntimeError as e:  # the chunk checksum does not match: the file was damaged
      raise self._index_error(e) from e
    if last[: len(_INDEX_MAGIC)] != _INDEX_MAGIC:
      return np.arange(count + 1)  # versions 1 and 2: every record is a clip
    body = last[len(_INDEX_MAGIC) :]
    if len(body) % _INDEX_DTYPE.itemsize:
      raise self._index_error(ValueError(f"{len(body)} bytes of record numbers"))
    heads = np.append(np.frombuffer(body, _INDEX_DTYPE).astype(np.int64), count - 1)
    if heads[0] != 0 or np.any(np.diff(heads) < 2):  # a head and at least one piece each
      raise self._index_error(ValueError("record numbers out of order"))
    return heads

  def _index_error(self, cause: Exception) -> UserError:
    return UserError(
      f"the clip index of clip shard {self.path} is corrupt ({cause}); regenerate the data"
    )

  def __len__(self) -> int:
    return len(self._heads) - 1

  def clip(self, index: int) -> StoredClip:
    """Clip `index` of the shard, read from its head record; its frames are read on demand.

    A clip that cannot be read, then or when its frames are, raises a UserError naming it.
    """
    head_record, stop = int(self._heads[index]), int(self._heads[index + 1])
    try:
      (head,) = self._read([head_record])
      return open_clip(head, _ShardPieces(self, head_record + 1, stop), (self.path, index))
    except ValueError as e:
      raise corrupt_clip_error(self.path, index, e) from e

  def _read(self, records: list[int]) -> list[bytes]:
    """The given records; ValueError if one does not read."""
    try:
      return self._reader.read(records)
    except RuntimeError as e:  # the chunk checksum does not match: the file was damaged
      raise ValueError(f"its records do not read: {e}") from e

  def close(self) -> None:
    self._reader.close()


class _ShardPieces(Sequence):
  """A clip's piece records [first, stop) in a shard, read only when sliced or indexed."""

  def __init__(self, shard: ClipShard, first: int, stop: int):
    self._shard, self._records = shard, range(first, stop)

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self._shard._read(list(self._records[index]))
    return self._shard._read([self._records[index]])[0]


def read_clips(paths: Sequence[str], share: tuple[int, int] = (0, 1)) -> Iterator[Clip]:
  """Yields every clip of the given shards in order, one at a time; with `share=(i, n)` only clips
  i, i + n, i + 2n, ... (one process's share of n), the others left unread."""
  first, count = share
  position = 0
  for path in paths:
    shard = ClipShard(path)
    try:
      for index in range(len(shard)):
        if position % count == first:
          yield shard.clip(index).decoded()
        position += 1
    finally:
      shard.close()
