"""Tests for the clip container: record encoding and ArrayRecord shards."""

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
from array_record.python import array_record_module

from jaxtalk.data import clips
from jaxtalk.errors import UserError
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


def assert_same_clip(decoded: clips.Clip, original: clips.Clip):
  np.testing.assert_array_equal(decoded.frames, original.frames)
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
def test_encode_decode_round_trip(with_truth):
  clip = make_clip(3, with_truth=with_truth)
  clip.audio[:2] = [1.0, -1.0]
  decoded = clips.decode_clip(clips.encode_clip(clip))
  assert_same_clip(decoded, clip)
  assert decoded.audio[0] == 1.0 and decoded.audio[1] == -1.0


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
  with pytest.raises(ValueError, match="magic"):
    clips.decode_clip(b"PICKLE" + record)
  with pytest.raises(ValueError, match="truncated"):
    clips.decode_clip(record[:-10])
  with pytest.raises(ValueError, match="trailing"):
    clips.decode_clip(record + b"\0")
  newer = record.replace(b'"format_version": 1', b'"format_version": 9', 1)
  with pytest.raises(ValueError, match="format version 9"):
    clips.decode_clip(newer)


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
  paths = clips.write_shards(iter(originals), str(tmp_path), "train", clips_per_shard=2)
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
