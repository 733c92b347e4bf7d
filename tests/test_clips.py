"""Tests for the clip container: record encoding, frame codecs, window reads and ArrayRecord shards."""

import dataclasses
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from array_record.python import array_record_module

from jaxtalk.data import clips
from jaxtalk.data.frame_codecs import JPEG, RAW, FrameCodec
from jaxtalk.errors import UserError
from jaxtalk.timebase import FPS, SAMPLE_RATE
from jaxtalk.timebase import SAMPLES_PER_FRAME as SPF


def make_clip(
  index: int, num_frames: int = 6, size: int = 8, with_truth: bool = True
) -> clips.Clip:
  rng = np.random.default_rng(index)
  return clips.Clip(
    frames=rng.integers(0, 256, (num_frames, size, size, 3), dtype=np.uint8),
    audio=rng.uniform(-1, 1, num_frames * SPF).astype(np.float32),
    meta={
      "clip_id": f"clip{index}",
      "identity_id": index % 2,
      "emotion": "happy",
      "split": "train",
    },
    motion=rng.normal(size=(num_frames, 5)).astype(np.float32) if with_truth else None,
    identity=rng.normal(size=(7,)).astype(np.float32) if with_truth else None,
  )


def smooth_frames(num_frames: int, size: int) -> np.ndarray:
  """Frames like a camera's: smooth shading and a moving blob, the content JPEG is made for."""
  y, x = np.mgrid[0:size, 0:size] / size
  frames = []
  for t in range(num_frames):
    blob = np.exp(-((x - 0.3 - 0.05 * t) ** 2 + (y - 0.5) ** 2) / 0.02)
    channels = [0.2 + 0.5 * x, 0.3 + 0.4 * y * (1 - x), 0.4 + 0.3 * np.sin(3 * x + 2 * y + t)]
    frames.append(np.stack([c + 0.3 * blob for c in channels], axis=-1))
  return np.clip(np.stack(frames) * 255, 0, 255).round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return 10 * np.log10(255**2 / mse)


def frame_byte_range(record: bytes, index: int) -> tuple[int, int]:
  """Where frame `index` lies in a version 2 record, from the layout clips.py documents."""
  (header_length,) = struct.unpack_from("<I", record, 8)
  sizes = json.loads(record[12 : 12 + header_length])["frames"]["sizes"]
  start = 12 + header_length + sum(sizes[:index])
  return start, start + sizes[index]


def version_1_record(clip: clips.Clip) -> bytes:
  """A record as jaxtalk wrote them before version 2: raw frames as the first of the arrays."""
  arrays = {
    "frames": ("|u1", clip.frames),
    "audio": ("<i2", np.round(clip.audio * 32767)),
    "motion": ("<f4", clip.motion),
    "identity": ("<f4", clip.identity),
  }
  stored = {name: np.asarray(a, dtype) for name, (dtype, a) in arrays.items() if a is not None}
  header = {
    "format_version": 1,
    "fps": FPS,
    "sample_rate": SAMPLE_RATE,
    "meta": clip.meta,
    "arrays": {name: {"dtype": a.dtype.str, "shape": list(a.shape)} for name, a in stored.items()},
  }
  header_bytes = json.dumps(header).encode()
  buffers = [a.tobytes() for a in stored.values()]
  return b"".join([b"JAXTALK\0", struct.pack("<I", len(header_bytes)), header_bytes, *buffers])


def assert_same_clip(decoded: clips.Clip, original: clips.Clip, min_frame_psnr: float = np.inf):
  """Equal clips; with `min_frame_psnr`, frames need only be that close (lossy codecs)."""
  if min_frame_psnr == np.inf:
    np.testing.assert_array_equal(decoded.frames, original.frames)
  else:
    assert decoded.frames.shape == original.frames.shape and decoded.frames.dtype == np.uint8
    assert psnr(decoded.frames, original.frames) >= min_frame_psnr
  assert decoded.audio.dtype == np.float32
  # 16-bit PCM: every sample within half a quantisation step, and full scale survives exactly.
  np.testing.assert_allclose(decoded.audio, original.audio, rtol=0, atol=0.5 / 32767 + 1e-7)
  assert decoded.meta == original.meta
  for name in ("motion", "identity"):
    expected = getattr(original, name)
    if expected is None:
      assert getattr(decoded, name) is None
    else:
      np.testing.assert_array_equal(getattr(decoded, name), expected)


@pytest.mark.parametrize("with_truth", [True, False])
def test_raw_round_trip_is_lossless(with_truth):
  clip = make_clip(3, with_truth=with_truth)
  clip.audio[:2] = [1.0, -1.0]
  decoded = clips.decode_clip(clips.encode_clip(clip, RAW))
  assert_same_clip(decoded, clip)
  assert decoded.audio[0] == 1.0 and decoded.audio[1] == -1.0


def test_jpeg_round_trip_is_close_smaller_and_records_its_quality():
  clip = dataclasses.replace(make_clip(3), frames=smooth_frames(6, 64))
  record = clips.encode_clip(clip)  # JPEG at quality 95 by default
  assert clips.open_clip(record).frames.codec == JPEG == FrameCodec("jpeg", 95)
  # Visually lossless: JPEG at 95 on camera-like frames stays above 45 dB (49 measured; 80 gives
  # 44.8); a coarse 30 falls below 40.
  assert_same_clip(clips.decode_clip(record), clip, min_frame_psnr=45.0)
  coarse = clips.encode_clip(clip, FrameCodec("jpeg", 30))
  assert clips.open_clip(coarse).frames.codec.quality == 30
  assert psnr(clips.decode_clip(coarse).frames, clip.frames) < 40.0
  raw = clips.encode_clip(clip, RAW)
  assert len(coarse) < len(record) < len(raw) - clip.frames.nbytes // 2


def test_version_1_records_still_decode():
  clip = make_clip(5)
  assert_same_clip(clips.decode_clip(version_1_record(clip)), clip)
  no_truth = make_clip(6, with_truth=False)
  stored = clips.open_clip(version_1_record(no_truth))
  assert stored.frames.codec == RAW and stored.motion is None
  np.testing.assert_array_equal(stored.frames.read(2, 5), no_truth.frames[2:5])


@pytest.mark.parametrize("codec", [RAW, JPEG], ids=["raw", "jpeg"])
def test_window_reads_match_the_whole_clip(codec):
  clip = dataclasses.replace(make_clip(7, num_frames=9), frames=smooth_frames(9, 16))
  record = clips.encode_clip(clip, codec)
  whole = clips.decode_clip(record).frames
  frames = clips.open_clip(record).frames
  assert len(frames) == 9 and frames.shape == (9, 16, 16, 3)
  np.testing.assert_array_equal(frames.read(3, 7), whole[3:7])
  np.testing.assert_array_equal(frames.frame(8), whole[8])
  assert frames.read(4, 4).shape == (0, 16, 16, 3)
  window = frames.read(0, 2)
  window[:] = 0  # a new array: editing it leaves the record alone
  np.testing.assert_array_equal(frames.read(0, 2), whole[:2])
  with pytest.raises(IndexError, match=r"frames \[7, 10\) are not within the clip's 9"):
    frames.read(7, 10)


def test_window_reads_decode_only_their_frames(monkeypatch):
  decoded = []
  real_decode = FrameCodec.decode

  def counting_decode(codec, data, size):
    decoded.append(bytes(data))
    return real_decode(codec, data, size)

  clip = dataclasses.replace(make_clip(8, num_frames=10), frames=smooth_frames(10, 16))
  record = clips.encode_clip(clip)
  monkeypatch.setattr(FrameCodec, "decode", counting_decode)
  frames = clips.open_clip(record).frames
  assert decoded == []  # opening a record decodes no frame
  frames.read(4, 7)
  frames.frame(1)
  assert decoded == [record[slice(*frame_byte_range(record, i))] for i in (4, 5, 6, 1)]


def test_a_frame_that_does_not_decode_spoils_only_reads_that_need_it(tmp_path):
  clip = dataclasses.replace(make_clip(9, num_frames=6), frames=smooth_frames(6, 16))
  record = bytearray(clips.encode_clip(clip))
  start, end = frame_byte_range(bytes(record), 4)
  record[start:end] = bytes(end - start)  # frame 4 is no JPEG any more
  record = bytes(record)
  intact = clips.decode_clip(clips.encode_clip(clip)).frames
  frames = clips.open_clip(record).frames
  np.testing.assert_array_equal(frames.read(0, 4), intact[:4])
  np.testing.assert_array_equal(frames.frame(5), intact[5])
  with pytest.raises(ValueError, match="frame 4 does not decode: not a JPEG image"):
    frames.read(3, 5)
  with pytest.raises(ValueError, match="frame 4 does not decode"):
    clips.decode_clip(record)
  path = str(tmp_path / "train-00000.array_record")
  writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
  writer.write(record)
  writer.close()
  with pytest.raises(UserError, match=f"record 0 of clip shard {path} is corrupt .*frame 4"):
    list(clips.read_clips([path]))


@pytest.mark.parametrize(
  "change, message",
  [
    (dict(frames=np.zeros((6, 8, 8, 3), np.float32)), "uint8"),
    (dict(frames=np.zeros((6, 8, 9, 3), np.uint8)), "shape"),
    (dict(frames=np.zeros((0, 8, 8, 3), np.uint8)), "shape"),
    (dict(audio=np.zeros(6 * SPF + 1, np.float32)), "samples"),
    (dict(audio=np.zeros(6 * SPF, np.float64)), "float32"),
    (dict(audio=np.full(6 * SPF, 1.5, np.float32)), r"\[-1, 1\]"),
    (dict(audio=np.full(6 * SPF, np.nan, np.float32)), "finite"),
    (dict(meta={"clip_id": object()}), "JSON"),
    (dict(motion=np.zeros((5, 5), np.float32)), "one row per frame"),
    (dict(identity=np.zeros((7,), np.float64)), "identity"),
  ],
)
def test_encode_rejects_malformed_clip(change, message):
  with pytest.raises(ValueError, match=message):
    clips.encode_clip(dataclasses.replace(make_clip(0), **change))


def test_decode_rejects_damaged_records():
  record = clips.encode_clip(make_clip(0))
  assert b'"format_version": 2' in record
  with pytest.raises(ValueError, match="magic"):
    clips.decode_clip(b"PICKLE" + record)
  with pytest.raises(ValueError, match="truncated"):
    clips.decode_clip(record[:-10])
  with pytest.raises(ValueError, match="trailing"):
    clips.decode_clip(record + b"\0")
  newer = record.replace(b'"format_version": 2', b'"format_version": 9', 1)
  with pytest.raises(ValueError, match="format version 9"):
    clips.decode_clip(newer)
  other_codec = record.replace(b'"codec": "jpeg"', b'"codec": "webp"', 1)
  with pytest.raises(ValueError, match="unknown frame codec 'webp'"):
    clips.decode_clip(other_codec)
  (header_length,) = struct.unpack_from("<I", record, 8)
  header = json.loads(record[12 : 12 + header_length])
  header["frames"]["sizes"].pop()
  header_bytes = json.dumps(header).encode()
  missing_size = record[:8] + struct.pack("<I", len(header_bytes)) + header_bytes
  with pytest.raises(ValueError, match="lists 5 frame sizes for 6 frames"):
    clips.decode_clip(missing_size + record[12 + header_length :])


@pytest.mark.parametrize(
  "name, quality, message",
  [("png", None, "unknown frame codec"), ("raw", 90, "no quality"), ("jpeg", 100, r"\[1, 95\]")],
)
def test_frame_codecs_refuse_settings_they_do_not_have(name, quality, message):
  with pytest.raises(ValueError, match=message):
    FrameCodec(name, quality)


def test_records_made_at_other_rates_are_refused(tmp_path):
  record = clips.encode_clip(make_clip(4))
  thirty_fps = record.replace(b'"fps": 25', b'"fps": 30', 1)
  with pytest.raises(
    UserError, match="clip clip4 is 30 fps / .* Hz, but jaxtalk works at 25 fps / 16 kHz"
  ):
    clips.decode_clip(thirty_fps)
  path = str(tmp_path / "train-00000.array_record")
  writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
  writer.write(thirty_fps)
  writer.close()
  with pytest.raises(UserError, match="remake the data"):
    list(clips.read_clips([path]))


def test_write_and_read_shards(tmp_path):
  originals = [make_clip(i) for i in range(5)]
  paths = clips.write_shards(
    iter(originals), str(tmp_path), "train", clips_per_shard=2, frame_codec=RAW
  )
  assert [os.path.basename(p) for p in paths] == [
    "train-00000.array_record",
    "train-00001.array_record",
    "train-00002.array_record",
  ]
  assert sorted(os.listdir(tmp_path)) == [os.path.basename(p) for p in paths]  # no temp files left
  clips.write_shards([make_clip(9)], str(tmp_path), "val")
  assert clips.shard_paths(str(tmp_path), "train") == paths
  decoded = list(clips.read_clips(paths))
  assert len(decoded) == len(originals)
  for got, expected in zip(decoded, originals):
    assert_same_clip(got, expected)


def test_write_shards_refuses_to_mix_with_existing_shards(tmp_path):
  clips.write_shards([make_clip(0)], str(tmp_path), "train")
  with pytest.raises(UserError, match="already holds train shards"):
    clips.write_shards([make_clip(1)], str(tmp_path), "train")


def test_interrupted_write_leaves_only_whole_shards(tmp_path):
  def clips_then_crash():
    for i in range(3):
      yield make_clip(i)
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    clips.write_shards(clips_then_crash(), str(tmp_path), "train", clips_per_shard=2)
  assert os.listdir(tmp_path) == ["train-00000.array_record"]
  assert len(list(clips.read_clips(clips.shard_paths(str(tmp_path), "train")))) == 2


def test_shard_paths_explains_missing_data(tmp_path):
  with pytest.raises(UserError, match="no val shards in"):
    clips.shard_paths(str(tmp_path), "val")
  with pytest.raises(UserError, match="does not exist"):
    clips.shard_paths(str(tmp_path / "nowhere"), "train")


def test_corrupt_shard_raises_user_error_naming_the_file(tmp_path):
  (path,) = clips.write_shards([make_clip(i, size=16) for i in range(2)], str(tmp_path), "train")
  data = bytearray(Path(path).read_bytes())
  data[1000:1064] = bytes(64)  # inside the first clip's chunk
  with open(path, "wb") as f:
    f.write(data)
  with pytest.raises(UserError, match=f"{path} is corrupt"):
    list(clips.read_clips([path]))

  with open(path, "wb") as f:
    f.write(b"not an array record" * 10)
  with pytest.raises(UserError, match=f"{path} is corrupt"):
    list(clips.read_clips([path]))

  with pytest.raises(UserError, match="does not exist"):
    list(clips.read_clips([str(tmp_path / "missing.array_record")]))


def test_corrupt_record_in_valid_shard_raises_user_error(tmp_path):
  path = str(tmp_path / "train-00000.array_record")
  writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
  writer.write(clips.encode_clip(make_clip(0)))
  writer.write(b"JAXTALK\0garbage")
  writer.close()
  with pytest.raises(UserError, match=f"record 1 of clip shard {path} is corrupt"):
    list(clips.read_clips([path]))
