"""The clip container: one talking-head clip per ArrayRecord record, many clips per shard file.

Every data source (the SynthTalk generator, the real-video preprocessor) writes clips with
`write_shards`, and everything downstream (the training pipeline, evaluation) reads them back, so
this file is the one place that knows the byte layout.

A record is self-describing and needs no pickle:

  MAGIC | header length (uint32, little endian) | header (UTF-8 JSON) | frames | array buffers

The header holds the format version, fps, sample rate, the clip's metadata, the frames' codec
(`jaxtalk.data.frame_codecs`: raw, or a JPEG per frame at a recorded quality), shape and the byte
size of every encoded frame, and for every other array its dtype and shape. The encoded frames
follow one after another, so any frame can be found and decoded alone (`StoredFrames`); then the
array buffers in header order. Audio is 16-bit PCM (half the size of float32, and the precision
of the sources it comes from), motion and identity parameters are float32. The rates are always
jaxtalk's 25 fps and 16 kHz (`jaxtalk.timebase`); storing them keeps a record self-describing, and
lets a reader refuse data made at other rates instead of misaligning it.

Version 1 records, whose frames are one raw uint8 buffer listed among the arrays, still read.
"""

import dataclasses
import glob
import itertools
import json
import os
import struct
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from array_record.python import array_record_module

from jaxtalk.data.frame_codecs import JPEG, RAW, FrameCodec
from jaxtalk.errors import UserError
from jaxtalk.timebase import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME

FORMAT_VERSION = 2
# Version 1 held raw frames as the first of its arrays, with no per-frame index.
_RAW_FRAMES_VERSION = 1
_MAGIC = b"JAXTALK\x00"
_HEADER_LENGTH = struct.Struct("<I")
_PCM_SCALE = 32767.0
# Stored dtype of every array besides the frames, in buffer order; motion and identity are optional.
_STORED_DTYPES = {"audio": "<i2", "motion": "<f4", "identity": "<f4"}
_RAW_FRAMES_DTYPE = "|u1"
# One clip per chunk, so the data loader can read any clip without decoding its neighbours.
# ArrayRecord's own compression (zstd) shrinks raw frames but not JPEG bytes, whose reading it
# would only slow down.
_WRITER_OPTIONS = {"raw": "group_size:1", "jpeg": "group_size:1,uncompressed"}
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


class StoredFrames:
  """A record's frames, still encoded: any range of them decodes without the others.

  `origin` (shard path, record index) names the record in the error a frame that does not decode
  raises (a UserError); without it the error is a ValueError.
  """

  def __init__(
    self,
    data: bytes,
    codec: FrameCodec,
    shape: tuple[int, ...],
    bounds: np.ndarray,
    origin: tuple[str, int] | None = None,
  ):
    self.codec, self.shape, self._view = codec, shape, memoryview(data)
    self._bounds, self._origin = bounds, origin  # frame i is data[bounds[i]:bounds[i + 1]]

  def __len__(self) -> int:
    return self.shape[0]

  def read(self, start: int, stop: int) -> np.ndarray:
    """Frames [start, stop) as a new [stop - start, S, S, 3] uint8 array."""
    if not 0 <= start <= stop <= len(self):
      raise IndexError(f"frames [{start}, {stop}) are not within the clip's {len(self)}")
    frames = np.empty((stop - start, *self.shape[1:]), np.uint8)
    for i in range(start, stop):
      frames[i - start] = self._decode(i)
    return frames

  def frame(self, index: int) -> np.ndarray:
    """Frame `index` as a new [S, S, 3] uint8 array."""
    return self.read(index, index + 1)[0]

  def _decode(self, index: int) -> np.ndarray:
    encoded = self._view[self._bounds[index] : self._bounds[index + 1]]
    try:
      return self.codec.decode(encoded, self.shape[1])
    except ValueError as e:
      error = ValueError(f"frame {index} does not decode: {e}")
      if self._origin is None:
        raise error from e
      raise corrupt_record_error(*self._origin, error) from e


@dataclasses.dataclass
class StoredClip:
  """A clip as read from its record: everything decoded but the frames, which decode on demand.

  Audio is a new array; motion and identity are read-only views into the record.
  """

  frames: StoredFrames
  audio: np.ndarray
  meta: dict
  motion: np.ndarray | None = None
  identity: np.ndarray | None = None

  def decoded(self) -> Clip:
    """The clip with all its frames decoded."""
    return Clip(
      frames=self.frames.read(0, len(self.frames)),
      audio=self.audio,
      meta=self.meta,
      motion=self.motion,
      identity=self.identity,
    )


def _check_frames_shape(shape) -> None:
  if len(shape) != 4 or shape[0] < 1 or shape[1] != shape[2] or shape[3] != 3:
    raise ValueError(f"clip frames must have shape [T>=1, S, S, 3], got {tuple(shape)}")


def _check_companions(num_frames: int, audio, meta, motion, identity) -> None:
  """Raises ValueError unless audio, meta, motion and identity fit a clip of num_frames frames."""
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
  _check_companions(frames.shape[0], clip.audio, clip.meta, clip.motion, clip.identity)


def encode_clip(clip: Clip, frame_codec: FrameCodec = JPEG) -> bytes:
  """Serialises a clip into one record, each frame stored with `frame_codec`; raises ValueError if
  the clip is malformed."""
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
  return b"".join([_MAGIC, _HEADER_LENGTH.pack(len(header)), header, *encoded_frames, *buffers])


def _read_header(data: bytes) -> tuple[dict, int]:
  """(the record's header, where its buffers start); refuses unknown versions and other rates."""
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
  if version not in (_RAW_FRAMES_VERSION, FORMAT_VERSION):
    raise ValueError(
      f"clip record has format version {version}, this jaxtalk reads versions "
      f"{_RAW_FRAMES_VERSION} and {FORMAT_VERSION}"
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


def _frames_layout(header: dict, specs: dict) -> tuple[FrameCodec, list, list]:
  """(codec, shape, encoded size of every frame) of the record's frames.

  A version 1 record's raw frames are its first array: popped from `specs`.
  """
  if header["format_version"] == _RAW_FRAMES_VERSION:
    spec = specs.pop("frames", None)
    shape = spec.get("shape") if isinstance(spec, dict) else None
    if not _is_shape(shape) or spec.get("dtype") != _RAW_FRAMES_DTYPE:
      raise ValueError(f"clip record has a malformed frames entry: {spec}")
    _check_frames_shape(shape)
    return RAW, shape, [shape[1] * shape[2] * shape[3]] * shape[0]
  entry = header.get("frames")
  if not isinstance(entry, dict):
    raise ValueError(f"clip record has a malformed frames entry: {entry}")
  codec = FrameCodec.from_header(entry)
  shape, sizes = entry.get("shape"), entry.get("sizes")
  if not (_is_shape(shape) and _is_shape(sizes)):
    raise ValueError(f"clip record has a malformed frames entry: {entry}")
  _check_frames_shape(shape)
  if len(sizes) != shape[0]:
    raise ValueError(f"clip record lists {len(sizes)} frame sizes for {shape[0]} frames")
  return codec, shape, sizes


def open_clip(data: bytes, origin: tuple[str, int] | None = None) -> StoredClip:
  """Parses a record written by `encode_clip`, leaving its frames encoded until they are read.

  Raises ValueError if it is not a valid clip record, and UserError if it is one made at other
  rates than jaxtalk's. `origin` is for `StoredFrames`' errors.
  """
  header, offset = _read_header(data)
  specs = header.get("arrays")
  if not isinstance(specs, dict):
    raise ValueError(f"clip record has a malformed arrays entry: {specs}")
  specs = dict(specs)
  codec, shape, sizes = _frames_layout(header, specs)
  if not {"audio"} <= specs.keys() <= _STORED_DTYPES.keys():
    raise ValueError(
      f"clip record holds arrays {sorted(specs)}, expected audio[, motion, identity]"
    )
  bounds = offset + np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
  offset = int(bounds[-1])
  if offset > len(data):
    raise ValueError("clip record is truncated inside its frames")
  arrays = {}
  for name in _STORED_DTYPES:  # buffers follow in this fixed order
    if name not in specs:
      continue
    spec, dtype = specs[name], np.dtype(_STORED_DTYPES[name])
    array_shape = spec.get("shape") if isinstance(spec, dict) else None
    if not _is_shape(array_shape) or spec.get("dtype") != _STORED_DTYPES[name]:
      raise ValueError(f"clip record has a malformed {name} entry: {spec}")
    count = int(np.prod(array_shape))
    if offset + count * dtype.itemsize > len(data):
      raise ValueError(f"clip record is truncated inside its {name} buffer")
    arrays[name] = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(array_shape)
    offset += count * dtype.itemsize
  if offset != len(data):
    raise ValueError(f"clip record has {len(data) - offset} unexpected trailing bytes")
  clip = StoredClip(
    frames=StoredFrames(data, codec, tuple(shape), bounds, origin),
    audio=arrays["audio"].astype(np.float32) / np.float32(_PCM_SCALE),
    meta=header.get("meta"),
    motion=arrays.get("motion"),
    identity=arrays.get("identity"),
  )
  _check_companions(shape[0], clip.audio, clip.meta, clip.motion, clip.identity)
  return clip


def decode_clip(data: bytes) -> Clip:
  """`open_clip` with all frames decoded: ValueError also if a frame does not decode."""
  return open_clip(data).decoded()


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
  """Writes one shard under a temporary name and renames it into place only once it is complete."""
  temp_path = f"{path}.tmp-{os.getpid()}"
  writer = array_record_module.ArrayRecordWriter(temp_path, _WRITER_OPTIONS[frame_codec.name])
  try:
    for clip in shard_clips:
      writer.write(encode_clip(clip, frame_codec))
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


def open_shard(path: str):
  """Opens a shard for random access; UserError naming the file if it is missing or not a shard."""
  if not os.path.isfile(path):
    raise UserError(f"clip shard {path} does not exist; check the data directory")
  reader = array_record_module.ArrayRecordReader(path)
  if not reader.ok():
    raise UserError(
      f"clip shard {path} is corrupt or not an ArrayRecord file; delete it and regenerate the data"
    )
  return reader


def corrupt_record_error(path: str, index: int, cause: Exception) -> UserError:
  """The error for a record that cannot be read back, naming its shard so the user can regenerate it."""
  return UserError(f"record {index} of clip shard {path} is corrupt ({cause}); regenerate the data")


def open_record(data: bytes, path: str, index: int) -> StoredClip:
  """`open_clip`, with a corrupt record (or, when read, frame) reported as a UserError that names
  its shard."""
  try:
    return open_clip(data, origin=(path, index))
  except ValueError as e:
    raise corrupt_record_error(path, index, e) from e


def read_clips(paths: Sequence[str]) -> Iterator[Clip]:
  """Yields every clip of the given shards in order, one at a time."""
  for path in paths:
    reader = open_shard(path)
    try:
      for index in range(reader.num_records()):
        try:
          (data,) = reader.read([index])
        except RuntimeError as e:  # the chunk checksum does not match: the file was damaged
          raise corrupt_record_error(path, index, e) from e
        yield open_record(data, path, index).decoded()
    finally:
      reader.close()
