"""The clip container: one talking-head clip per ArrayRecord record, many clips per shard file.

Every data source (the SynthTalk generator, the real-video preprocessor) writes clips with
`write_shards`, and everything downstream (the training pipeline, evaluation) reads them back, so
this file is the one place that knows the byte layout.

A record is self-describing and needs no pickle:

  MAGIC | header length (uint32, little endian) | header (UTF-8 JSON) | raw array buffers

The header holds the format version, fps, sample rate, the clip's metadata and, for every array,
its dtype and shape; the buffers follow in header order. Frames are raw uint8, audio is 16-bit
PCM (half the size of float32, and the precision of the sources it comes from), motion and
identity parameters are float32. The rates are always jaxtalk's 25 fps and 16 kHz
(`jaxtalk.timebase`); storing them keeps a record self-describing, and lets a reader refuse data
made at other rates instead of misaligning it.
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

from jaxtalk.errors import UserError
from jaxtalk.timebase import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME

FORMAT_VERSION = 1
_MAGIC = b"JAXTALK\x00"
_HEADER_LENGTH = struct.Struct("<I")
_PCM_SCALE = 32767.0
# Stored dtype of every array a record may hold, in buffer order; motion and identity are optional.
_STORED_DTYPES = {"frames": "|u1", "audio": "<i2", "motion": "<f4", "identity": "<f4"}
# One clip per chunk, so the data loader can read any clip without decoding its neighbours.
_WRITER_OPTIONS = "group_size:1"
_SHARD_SUFFIX = ".array_record"


@dataclasses.dataclass
class Clip:
  """One talking-head clip: frames, the speech that goes with them, and what is known about it.

  Arrays returned by `decode_clip` are read-only views into the record (no copy of the frames);
  copy them before editing in place.
  """

  frames: np.ndarray  # [T, S, S, 3] uint8, square frames
  audio: np.ndarray  # [T * SAMPLES_PER_FRAME] float32 in [-1, 1], mono
  meta: dict  # json-serialisable: clip_id, identity_id, utterance_id, emotion, source, split, ...
  motion: np.ndarray | None = None  # [T, P] float32 ground-truth motion (SynthTalk only)
  identity: np.ndarray | None = None  # [Q] float32 identity parameters (SynthTalk only)


def _validate(clip: Clip) -> None:
  """Raises ValueError unless every field has the shape and dtype the format promises."""
  frames = clip.frames
  if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
    raise ValueError(
      f"clip frames must be a uint8 array, got {getattr(frames, 'dtype', type(frames))}"
    )
  if (
    frames.ndim != 4
    or frames.shape[0] < 1
    or frames.shape[1] != frames.shape[2]
    or frames.shape[3] != 3
  ):
    raise ValueError(f"clip frames must have shape [T>=1, S, S, 3], got {frames.shape}")
  num_frames = frames.shape[0]
  audio = clip.audio
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
  if not isinstance(clip.meta, dict):
    raise ValueError(f"clip meta must be a dict, got {type(clip.meta).__name__}")
  try:
    json.dumps(clip.meta, allow_nan=False)
  except (TypeError, ValueError) as e:
    raise ValueError(f"clip meta must be JSON-serialisable: {e}") from e
  for name, ndim in (("motion", 2), ("identity", 1)):
    array = getattr(clip, name)
    if array is None:
      continue
    if not isinstance(array, np.ndarray) or array.dtype != np.float32 or array.ndim != ndim:
      got = (
        f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
      )
      raise ValueError(f"clip {name} must be a {ndim}-d float32 array, got {got}")
  if clip.motion is not None and clip.motion.shape[0] != num_frames:
    raise ValueError(
      f"clip motion must have one row per frame ({num_frames}), got shape {clip.motion.shape}"
    )


def encode_clip(clip: Clip) -> bytes:
  """Serialises a clip into one record; raises ValueError if the clip is malformed."""
  _validate(clip)
  arrays = {
    "frames": clip.frames,
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
  header = json.dumps(
    {
      "format_version": FORMAT_VERSION,
      "fps": FPS,
      "sample_rate": SAMPLE_RATE,
      "meta": clip.meta,
      "arrays": specs,
    }
  ).encode("utf-8")
  return b"".join([_MAGIC, _HEADER_LENGTH.pack(len(header)), header, *buffers])


def decode_clip(data: bytes) -> Clip:
  """Parses a record written by `encode_clip`.

  Raises ValueError if it is not a valid clip record, and UserError if it is one made at other
  rates than jaxtalk's.
  """
  prefix = len(_MAGIC) + _HEADER_LENGTH.size
  if len(data) < prefix or data[: len(_MAGIC)] != _MAGIC:
    raise ValueError("not a jaxtalk clip record (bad magic bytes)")
  (header_length,) = _HEADER_LENGTH.unpack_from(data, len(_MAGIC))
  try:
    header = json.loads(bytes(data[prefix : prefix + header_length]).decode("utf-8"))
    version = header["format_version"]
    specs = header["arrays"]
    rates = header["fps"], header["sample_rate"]
  except (UnicodeDecodeError, ValueError, TypeError, KeyError) as e:
    raise ValueError(f"clip record header is unreadable: {e}") from e
  if version != FORMAT_VERSION:
    raise ValueError(
      f"clip record has format version {version}, this jaxtalk reads version {FORMAT_VERSION}"
    )
  if rates != (FPS, SAMPLE_RATE):
    meta = header.get("meta")
    name = meta.get("clip_id", "?") if isinstance(meta, dict) else "?"
    raise UserError(
      f"clip {name} is {rates[0]} fps / {rates[1]} Hz, but jaxtalk works at 25 fps / 16 kHz; "
      "remake the data"
    )
  if (
    not isinstance(specs, dict) or not {"frames", "audio"} <= specs.keys() <= _STORED_DTYPES.keys()
  ):
    raise ValueError(
      f"clip record holds arrays {sorted(specs)}, expected frames, audio[, motion, identity]"
    )
  arrays, offset = {}, prefix + header_length
  for name in _STORED_DTYPES:  # buffers follow in this fixed order
    if name not in specs:
      continue
    spec, dtype = specs[name], np.dtype(_STORED_DTYPES[name])
    shape = spec.get("shape") if isinstance(spec, dict) else None
    if spec.get("dtype") != _STORED_DTYPES[name] or not (
      isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)
    ):
      raise ValueError(f"clip record has a malformed {name} entry: {spec}")
    count = int(np.prod(shape))
    if offset + count * dtype.itemsize > len(data):
      raise ValueError(f"clip record is truncated inside its {name} buffer")
    arrays[name] = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
    offset += count * dtype.itemsize
  if offset != len(data):
    raise ValueError(f"clip record has {len(data) - offset} unexpected trailing bytes")
  clip = Clip(
    frames=arrays["frames"],
    audio=arrays["audio"].astype(np.float32) / np.float32(_PCM_SCALE),
    meta=header.get("meta"),
    motion=arrays.get("motion"),
    identity=arrays.get("identity"),
  )
  _validate(clip)
  return clip


def _shard_name(split: str, index: int) -> str:
  return f"{split}-{index:05d}{_SHARD_SUFFIX}"


def _existing_shards(data_dir: str, split: str) -> list[str]:
  pattern = f"{glob.escape(split)}-[0-9][0-9][0-9][0-9][0-9]{_SHARD_SUFFIX}"
  return sorted(glob.glob(os.path.join(glob.escape(data_dir), pattern)))


def write_shards(
  clips: Iterable[Clip], out_dir: str, split: str, clips_per_shard: int = 32
) -> list[str]:
  """Writes clips into `{split}-{i:05d}.array_record` shards in out_dir; returns their paths.

  Clips are streamed: only one is held in memory at a time. Each shard is written under a
  temporary name and renamed when complete, so an interrupted run leaves no half-written shard
  that a reader would take for a whole one.
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
    _write_shard(
      path, itertools.chain([first_clip], itertools.islice(clip_iterator, clips_per_shard - 1))
    )
    paths.append(path)
  return paths


def _write_shard(path: str, shard_clips: Iterable[Clip]) -> None:
  """Writes one shard under a temporary name and renames it into place only once it is complete."""
  temp_path = f"{path}.tmp-{os.getpid()}"
  writer = array_record_module.ArrayRecordWriter(temp_path, _WRITER_OPTIONS)
  try:
    for clip in shard_clips:
      writer.write(encode_clip(clip))
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


def decode_record(data: bytes, path: str, index: int) -> Clip:
  """`decode_clip`, with a corrupt record reported as a UserError that names its shard."""
  try:
    return decode_clip(data)
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
        yield decode_record(data, path, index)
    finally:
      reader.close()
