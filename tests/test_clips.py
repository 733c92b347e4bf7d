"""Tests for the clip container: record encoding, frame codecs, window reads and ArrayRecord shards."""

import dataclasses
import json
import os
import struct
from pathlib import Path
from unittest import mock

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


def frame_location(records: list[bytes], index: int) -> tuple[int, int, int]:
  """(record, start, end): where frame `index` of a clip's records lies, from the layout clips.py
  documents."""
  (header_length,) = struct.unpack_from("<I", records[0], 8)
  frames = json.loads(records[0][12 : 12 + header_length])["frames"]
  piece = index // frames["piece_frames"]
  start = 8 + sum(frames["sizes"][piece * frames["piece_frames"] : index])
  return 1 + piece, start, start + frames["sizes"][index]


def write_records(path: str, records_of_clips: list[list[bytes]]) -> None:
  """A version 3 shard of the given clips' records, index last, as clips.py documents it."""
  writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
  heads = np.cumsum([0] + [len(records) for records in records_of_clips[:-1]])
  for records in records_of_clips:
    for record in records:
      writer.write(record)
  writer.write(b"JAXTALKI" + heads.astype("<u8").tobytes())
  writer.close()


def write_old_shard(path: str, records: list[bytes]) -> None:
  """A shard as jaxtalk wrote them before version 3: one record per clip, no index."""
  writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
  for record in records:
    writer.write(record)
  writer.close()


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


def version_2_record(clip: clips.Clip, codec: FrameCodec = JPEG) -> bytes:
  """A record as jaxtalk wrote them in version 2: the whole clip, frames after the header."""
  (head, *pieces) = clips.encode_clip(clip, codec)
  (header_length,) = struct.unpack_from("<I", head, 8)
  header = json.loads(head[12 : 12 + header_length])
  header["format_version"] = 2
  del header["frames"]["piece_frames"]
  header_bytes = json.dumps(header).encode()
  frames = [piece[8:] for piece in pieces]
  buffers = head[12 + header_length :]
  return b"".join(
    [b"JAXTALK\0", struct.pack("<I", len(header_bytes)), header_bytes, *frames, buffers]
  )


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


def long_clip(index: int, num_frames: int = 2 * clips.PIECE_FRAMES + 7) -> clips.Clip:
  """A clip of three pieces, the last one short."""
  return dataclasses.replace(make_clip(index, num_frames), frames=smooth_frames(num_frames, 16))


@pytest.mark.parametrize("with_truth", [True, False])
def test_raw_round_trip_is_lossless(with_truth):
  clip = make_clip(3, with_truth=with_truth)
  clip.audio[:2] = [1.0, -1.0]
  decoded = clips.decode_clip(clips.encode_clip(clip, RAW))
  assert_same_clip(decoded, clip)
  assert decoded.audio[0] == 1.0 and decoded.audio[1] == -1.0


def test_a_clip_is_a_head_and_pieces_of_its_frames():
  clip = long_clip(2)
  records = clips.encode_clip(clip, RAW)
  assert len(records) == 4 and b'"format_version": 3' in records[0]
  frame_bytes = 16 * 16 * 3
  piece_frames = [clips.PIECE_FRAMES, clips.PIECE_FRAMES, 7]
  assert [len(piece) for piece in records[1:]] == [8 + n * frame_bytes for n in piece_frames]
  assert not any(frame.tobytes() in records[0] for frame in clip.frames)  # the head holds none
  assert_same_clip(clips.decode_clip(records), clip)


def test_jpeg_round_trip_is_close_smaller_and_records_its_quality():
  clip = dataclasses.replace(make_clip(3), frames=smooth_frames(6, 64))
  records = clips.encode_clip(clip)  # JPEG at quality 95 by default
  assert clips.open_clip(records[0], records[1:]).frames.codec == JPEG == FrameCodec("jpeg", 95)
  # Visually lossless: JPEG at 95 on camera-like frames stays above 45 dB (49 measured; 80 gives
  # 44.8); a coarse 30 falls below 40.
  assert_same_clip(clips.decode_clip(records), clip, min_frame_psnr=45.0)
  coarse = clips.encode_clip(clip, FrameCodec("jpeg", 30))
  assert clips.open_clip(coarse[0], coarse[1:]).frames.codec.quality == 30
  assert psnr(clips.decode_clip(coarse).frames, clip.frames) < 40.0
  raw = clips.encode_clip(clip, RAW)
  sizes = [sum(map(len, r)) for r in (coarse, records, raw)]
  assert sizes[0] < sizes[1] < sizes[2] - clip.frames.nbytes // 2


def test_version_1_records_still_decode():
  clip = make_clip(5)
  assert_same_clip(clips.decode_clip([version_1_record(clip)]), clip)
  no_truth = make_clip(6, with_truth=False)
  stored = clips.open_clip(version_1_record(no_truth))
  assert stored.frames.codec == RAW and stored.motion is None
  np.testing.assert_array_equal(stored.frames.read(2, 5), no_truth.frames[2:5])


@pytest.mark.parametrize("codec", [RAW, JPEG], ids=["raw", "jpeg"])
def test_version_2_records_still_decode(codec):
  clip = long_clip(5)
  record = version_2_record(clip, codec)
  assert b'"format_version": 2' in record
  assert_same_clip(clips.decode_clip([record]), clips.decode_clip(clips.encode_clip(clip, codec)))
  frames = clips.open_clip(record).frames
  np.testing.assert_array_equal(frames.read(20, 30), clips.decode_clip([record]).frames[20:30])


def test_shards_of_older_versions_still_read(tmp_path):
  originals = [long_clip(i) for i in range(3)]
  path = str(tmp_path / "train-00000.array_record")
  write_old_shard(
    path, [version_1_record(originals[0])] + [version_2_record(c, RAW) for c in originals[1:]]
  )
  shard = clips.ClipShard(path)
  assert len(shard) == 3
  np.testing.assert_array_equal(shard.clip(2).frames.read(30, 40), originals[2].frames[30:40])
  for got, expected in zip(clips.read_clips([path]), originals):
    assert_same_clip(got, expected)


@pytest.mark.parametrize("codec", [RAW, JPEG], ids=["raw", "jpeg"])
def test_window_reads_match_the_whole_clip(codec):
  clip = long_clip(7)
  records = clips.encode_clip(clip, codec)
  whole = clips.decode_clip(records).frames
  frames = clips.open_clip(records[0], records[1:]).frames
  n = len(clip.frames)
  assert len(frames) == n and frames.shape == (n, 16, 16, 3)
  for start, stop in [(3, 7), (20, 30), (24, 51), (0, n), (n - 3, n)]:  # within and across pieces
    np.testing.assert_array_equal(frames.read(start, stop), whole[start:stop])
  np.testing.assert_array_equal(frames.frame(n - 1), whole[n - 1])
  assert frames.read(4, 4).shape == (0, 16, 16, 3)
  window = frames.read(0, 2)
  window[:] = 0  # a new array: editing it leaves the record alone
  np.testing.assert_array_equal(frames.read(0, 2), whole[:2])
  with pytest.raises(
    IndexError, match=rf"frames \[{n - 2}, {n + 1}\) are not within the clip's {n}"
  ):
    frames.read(n - 2, n + 1)


def test_window_reads_decode_only_their_frames(monkeypatch):
  decoded = []
  real_decode = FrameCodec.decode

  def counting_decode(codec, data, size):
    decoded.append(bytes(data))
    return real_decode(codec, data, size)

  records = clips.encode_clip(long_clip(8))
  monkeypatch.setattr(FrameCodec, "decode", counting_decode)
  frames = clips.open_clip(records[0], records[1:]).frames
  assert decoded == []  # opening a clip decodes no frame
  frames.read(24, 27)
  frames.frame(1)
  expected = []
  for i in (24, 25, 26, 1):
    record, start, end = frame_location(records, i)
    expected.append(records[record][start:end])
  assert decoded == expected


def test_window_reads_read_only_the_pieces_holding_their_frames(tmp_path, monkeypatch):
  originals = [long_clip(i) for i in range(2)]
  (path,) = clips.write_shards(originals, str(tmp_path), "train", frame_codec=RAW)
  read = []
  real_read = clips.ClipShard._read
  monkeypatch.setattr(
    clips.ClipShard, "_read", lambda s, records: read.append(records) or real_read(s, records)
  )
  shard = clips.ClipShard(path)
  assert len(shard) == 2 and read == []  # the index is read apart
  clip = shard.clip(1)  # clip 0 is records 0-3, clip 1 records 4-7, the index 8
  assert read == [[4]]
  np.testing.assert_array_equal(clip.frames.read(30, 40), originals[1].frames[30:40])
  np.testing.assert_array_equal(clip.frames.read(20, 27), originals[1].frames[20:27])
  assert read == [[4], [6], [5, 6]]


def test_a_damaged_piece_spoils_only_reads_that_need_it(tmp_path):
  original = long_clip(3)
  (path,) = clips.write_shards([original], str(tmp_path), "train")  # JPEG: stored as they are
  records = clips.encode_clip(original)
  whole = clips.decode_clip(records).frames
  data = bytearray(Path(path).read_bytes())
  piece = data.index(records[2][8:])  # piece 1, frames [25, 50)
  data[piece + 100 : piece + 164] = bytes(64)
  Path(path).write_bytes(data)
  clip = clips.ClipShard(path).clip(0)
  np.testing.assert_array_equal(clip.frames.read(0, 25), whole[:25])
  np.testing.assert_array_equal(clip.frames.frame(55), whole[55])
  with pytest.raises(UserError, match=f"clip 0 of clip shard {path} is corrupt .*do not read"):
    clip.frames.read(20, 30)
  with pytest.raises(UserError, match=f"clip 0 of clip shard {path} is corrupt"):
    list(clips.read_clips([path]))


def test_a_frame_that_does_not_decode_spoils_only_reads_that_need_it(tmp_path):
  clip = dataclasses.replace(make_clip(9, num_frames=6), frames=smooth_frames(6, 16))
  records = clips.encode_clip(clip)
  record, start, end = frame_location(records, 4)
  piece = bytearray(records[record])
  piece[start:end] = bytes(end - start)  # frame 4 is no JPEG any more
  records[record] = bytes(piece)
  intact = clips.decode_clip(clips.encode_clip(clip)).frames
  frames = clips.open_clip(records[0], records[1:]).frames
  np.testing.assert_array_equal(frames.read(0, 4), intact[:4])
  np.testing.assert_array_equal(frames.frame(5), intact[5])
  with pytest.raises(ValueError, match="frame 4 does not decode: not a JPEG image"):
    frames.read(3, 5)
  with pytest.raises(ValueError, match="frame 4 does not decode"):
    clips.decode_clip(records)
  path = str(tmp_path / "train-00000.array_record")
  write_records(path, [clips.encode_clip(make_clip(0)), records])
  with pytest.raises(UserError, match=f"clip 1 of clip shard {path} is corrupt .*frame 4"):
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


def with_header(head: bytes, change) -> bytes:
  """The head record with `change` applied to its parsed header."""
  (header_length,) = struct.unpack_from("<I", head, 8)
  header = json.loads(head[12 : 12 + header_length])
  change(header)
  header_bytes = json.dumps(header).encode()
  return head[:8] + struct.pack("<I", len(header_bytes)) + header_bytes + head[12 + header_length :]


def test_decode_rejects_damaged_records():
  head, *pieces = clips.encode_clip(long_clip(0))
  with pytest.raises(ValueError, match="magic"):
    clips.decode_clip([b"PICKLE" + head, *pieces])
  with pytest.raises(ValueError, match="truncated"):
    clips.decode_clip([head[:-10], *pieces])
  with pytest.raises(ValueError, match="trailing"):
    clips.decode_clip([head + b"\0", *pieces])
  newer = head.replace(b'"format_version": 3', b'"format_version": 9', 1)
  with pytest.raises(ValueError, match="format version 9"):
    clips.decode_clip([newer, *pieces])
  other_codec = head.replace(b'"codec": "jpeg"', b'"codec": "webp"', 1)
  with pytest.raises(ValueError, match="unknown frame codec 'webp'"):
    clips.decode_clip([other_codec, *pieces])
  missing_size = with_header(head, lambda header: header["frames"]["sizes"].pop())
  with pytest.raises(ValueError, match="lists 56 frame sizes for 57 frames"):
    clips.decode_clip([missing_size, *pieces])
  no_pieces = with_header(head, lambda header: header["frames"].pop("piece_frames"))
  with pytest.raises(ValueError, match="malformed frames entry"):
    clips.decode_clip([no_pieces, *pieces])
  (header_length,) = struct.unpack_from("<I", head, 8)
  below_full_scale = bytearray(head)
  below_full_scale[12 + header_length : 14 + header_length] = struct.pack("<h", -32768)
  with pytest.raises(ValueError, match=r"within \[-1, 1\]"):
    clips.decode_clip([bytes(below_full_scale), *pieces])
  with pytest.raises(ValueError, match="clip has 2 piece records, its header says 3"):
    clips.decode_clip([head, *pieces[:2]])
  with pytest.raises(ValueError, match="piece 1 is no piece of a clip"):
    clips.decode_clip([head, pieces[0], head, pieces[2]])
  with pytest.raises(ValueError, match="piece 2 holds .* bytes of frames, not"):
    clips.decode_clip([head, *pieces[:2], pieces[2][:-1]])


@pytest.mark.parametrize(
  "name, quality, message",
  [("png", None, "unknown frame codec"), ("raw", 90, "no quality"), ("jpeg", 100, r"\[1, 95\]")],
)
def test_frame_codecs_refuse_settings_they_do_not_have(name, quality, message):
  with pytest.raises(ValueError, match=message):
    FrameCodec(name, quality)


def test_records_made_at_other_rates_are_refused(tmp_path):
  head, *pieces = clips.encode_clip(make_clip(4))
  thirty_fps = head.replace(b'"fps": 25', b'"fps": 30', 1)
  with pytest.raises(
    UserError, match="clip clip4 is 30 fps / .* Hz, but jaxtalk works at 25 fps / 16 kHz"
  ):
    clips.decode_clip([thirty_fps, *pieces])
  path = str(tmp_path / "train-00000.array_record")
  write_records(path, [[thirty_fps, *pieces]])
  with pytest.raises(UserError, match="remake the data"):
    list(clips.read_clips([path]))


def test_write_and_read_shards(tmp_path):
  originals = [make_clip(i) for i in range(4)] + [long_clip(4)]
  paths = clips.write_shards(
    iter(originals), str(tmp_path), "train", clips_per_shard=2, frame_codec=RAW
  )
  assert [os.path.basename(p) for p in paths] == [
    "train-00000.array_record",
    "train-00001.array_record",
    "train-00002.array_record",
  ]
  assert sorted(os.listdir(tmp_path)) == [os.path.basename(p) for p in paths]  # no temp files left
  assert [len(clips.ClipShard(path)) for path in paths] == [2, 2, 1]  # clips, not records
  clips.write_shards([make_clip(9)], str(tmp_path), "val")
  assert clips.shard_paths(str(tmp_path), "train") == paths
  decoded = list(clips.read_clips(paths))
  assert len(decoded) == len(originals)
  for got, expected in zip(decoded, originals):
    assert_same_clip(got, expected)
  # One process's share of three, across the shards' boundaries; the other clips are not read.
  with mock.patch.object(
    clips.ClipShard, "clip", autospec=True, side_effect=clips.ClipShard.clip
  ) as clip:
    share = list(clips.read_clips(paths, share=(1, 3)))
    opened = [call.args[1] for call in clip.call_args_list]
  assert [c.meta["clip_id"] for c in share] == [
    originals[1].meta["clip_id"],
    originals[4].meta["clip_id"],
  ]
  assert opened == [1, 0]  # clip 1 of the first shard, clip 0 of the third


def test_write_shards_refuses_to_mix_with_existing_shards(tmp_path):
  clips.write_shards([make_clip(0)], str(tmp_path), "train")
  with pytest.raises(UserError, match="already holds train shards"):
    clips.write_shards([make_clip(1)], str(tmp_path), "train")


def test_interrupted_write_leaves_only_whole_shards(tmp_path):
  def clips_then_crash():
    for i in range(3):
      yield long_clip(i)
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
  data[1000:1064] = bytes(64)  # inside the first clip's head chunk
  with open(path, "wb") as f:
    f.write(data)
  with pytest.raises(UserError, match=f"clip 0 of clip shard {path} is corrupt"):
    list(clips.read_clips([path]))

  with open(path, "wb") as f:
    f.write(b"not an array record" * 10)
  with pytest.raises(UserError, match=f"{path} is corrupt"):
    list(clips.read_clips([path]))

  with pytest.raises(UserError, match="does not exist"):
    list(clips.read_clips([str(tmp_path / "missing.array_record")]))


def test_corrupt_clip_in_valid_shard_raises_user_error(tmp_path):
  path = str(tmp_path / "train-00000.array_record")
  write_records(path, [clips.encode_clip(make_clip(0)), [b"JAXTALK\0garbage", b"JAXTALKP"]])
  with pytest.raises(UserError, match=f"clip 1 of clip shard {path} is corrupt"):
    list(clips.read_clips([path]))


@pytest.mark.parametrize(
  "index, message",
  [
    (b"JAXTALKI" + bytes(5), "5 bytes of record numbers"),
    (b"JAXTALKI" + bytes(16), "out of order"),
  ],
)
def test_a_corrupt_shard_index_is_a_user_error(tmp_path, index, message):
  path = str(tmp_path / "train-00000.array_record")
  writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
  for record in [*clips.encode_clip(make_clip(0)), index]:
    writer.write(record)
  writer.close()
  with pytest.raises(
    UserError, match=f"the clip index of clip shard {path} is corrupt .*{message}"
  ):
    clips.ClipShard(path)
