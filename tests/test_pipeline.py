"""Tests for the grain window pipeline: alignment, determinism, resume, rows per host, and that it
decodes only the frames a window needs."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from array_record.python import array_record_module
from test_clips import version_2_record, write_old_shard

from jaxtalk.data import clips, pipeline
from jaxtalk.data.acting import ActingLayout
from jaxtalk.data.frame_codecs import JPEG, RAW, FrameCodec
from jaxtalk.errors import UserError
from jaxtalk.timebase import SAMPLES_PER_FRAME as SPF

NUM_CLIPS, NUM_FRAMES, SIZE, MOTION_DIM = 6, 12, 16, 3


def frame_value(clip: int, frame: int) -> int:
  return clip * 20 + frame


def audio_value(clip: int, frame: int, sample: np.ndarray) -> np.ndarray:
  """Audio that says which clip, frame and sample within the frame it belongs to."""
  return ((clip * NUM_FRAMES + frame + 1) + sample / SPF) / 100


def motion_value(clip: int, frame: int) -> np.ndarray:
  return clip * 100 + frame + np.arange(MOTION_DIM) / 10


def make_clip(clip: int, num_frames: int = NUM_FRAMES, with_motion: bool = True) -> clips.Clip:
  frames = np.stack(
    [np.full((SIZE, SIZE, 3), frame_value(clip, t), np.uint8) for t in range(num_frames)]
  )
  audio = np.concatenate([audio_value(clip, t, np.arange(SPF)) for t in range(num_frames)]).astype(
    np.float32
  )
  motion = np.stack([motion_value(clip, t) for t in range(num_frames)]).astype(np.float32)
  return clips.Clip(
    frames=frames, audio=audio, meta={"clip_id": f"c{clip}"}, motion=motion if with_motion else None
  )


def write(clip_iterator, out_dir, codec: FrameCodec = RAW, clips_per_shard: int = 32):
  """Raw frames unless told: the tests compare pixel values exactly."""
  return clips.write_shards(
    clip_iterator, str(out_dir), "train", clips_per_shard=clips_per_shard, frame_codec=codec
  )


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  out_dir = tmp_path_factory.mktemp("shards")
  return write((make_clip(c) for c in range(NUM_CLIPS)), out_dir, clips_per_shard=4)


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])


def test_windows_line_up_with_audio_motion_and_padding(shards):
  window, margin = 4, 3
  ds = pipeline.window_dataset(
    shards,
    window_frames=window,
    audio_margin_frames=margin,
    batch_size=4,
    seed=0,
    windows_per_clip=4,
    num_epochs=2,
  )
  starts = []
  for batch in ds:
    assert batch["frames"].dtype == np.uint8 and batch["frames"].shape == (4, window, SIZE, SIZE, 3)
    assert batch["reference"].shape == (4, SIZE, SIZE, 3)
    assert batch["audio"].dtype == np.float32 and batch["audio"].shape == (
      4,
      (window + 2 * margin) * SPF,
    )
    assert batch["motion"].dtype == np.float32 and batch["motion"].shape == (4, window, MOTION_DIM)
    assert batch["clip_index"].dtype == np.int32 and batch["start"].dtype == np.int32
    for b in range(4):
      clip, start = int(batch["clip_index"][b]), int(batch["start"][b])
      starts.append(start)
      assert 0 <= start <= NUM_FRAMES - window
      for i in range(window):
        assert np.all(batch["frames"][b, i] == frame_value(clip, start + i))
        np.testing.assert_array_equal(
          batch["motion"][b, i], motion_value(clip, start + i).astype(np.float32)
        )
      reference_frame = int(batch["reference"][b, 0, 0, 0]) - frame_value(clip, 0)
      assert 0 <= reference_frame < NUM_FRAMES
      assert np.all(batch["reference"][b] == frame_value(clip, reference_frame))
      assert batch["reference_index"][b] == reference_frame
      for k in range(window + 2 * margin):
        frame = start - margin + k
        samples = batch["audio"][b, k * SPF : (k + 1) * SPF]
        expected = (
          audio_value(clip, frame, np.arange(SPF)) if 0 <= frame < NUM_FRAMES else np.zeros(SPF)
        )
        np.testing.assert_allclose(samples, expected, atol=1e-4)
  # Both margins ran past the clip somewhere, so the zero padding was exercised at each end.
  assert min(starts) < margin and max(starts) > NUM_FRAMES - window - margin


def test_windows_carry_each_frames_acting_from_the_clip_meta(tmp_path):
  """With an acting layout, each window gets its frames' rows of the clip's acting track: clip c
  turns from calm to glad at frame c + 2 (and clips without acting meta get zeros)."""
  layout = ActingLayout(("calm", "glad"))
  acted = []
  for c in range(4):
    clip = make_clip(c)
    segments = [
      {"start": 0, "emotion": "calm"},
      {"start": c + 2, "emotion": "glad", "intensity": 0.5},
    ]
    acted.append(dataclasses.replace(clip, meta={**clip.meta, "acting": {"segments": segments}}))
  paths = write([*acted, make_clip(4)], tmp_path)
  ds = pipeline.window_dataset(
    paths,
    window_frames=4,
    audio_margin_frames=0,
    batch_size=5,
    seed=0,
    num_epochs=2,
    with_frames=False,
    acting=layout,
  )
  for batch in ds:
    for b in range(5):
      clip, start = int(batch["clip_index"][b]), int(batch["start"][b])
      meta = acted[clip].meta if clip < 4 else {}
      expected = layout.track(meta, NUM_FRAMES)[start : start + 4]
      np.testing.assert_array_equal(batch["acting"][b], expected)
      if clip < 4:  # the change lands on its own frame, whatever the window's start
        glad = batch["acting"][b, :, 1] == 0.5
        np.testing.assert_array_equal(glad, np.arange(start, start + 4) >= clip + 2)


def textured_clip(clip: int, num_frames: int = NUM_FRAMES) -> clips.Clip:
  """A clip whose frames differ pixel by pixel, so a lossy codec changes them."""
  rng = np.random.default_rng(clip)
  frames = rng.integers(0, 256, (num_frames, SIZE, SIZE, 3), dtype=np.uint8)
  return clips.Clip(frames=frames, audio=np.zeros(num_frames * SPF, np.float32), meta={})


# Three pieces, the last one short.
LONG_FRAMES = 2 * clips.PIECE_FRAMES + 7


@pytest.mark.parametrize("codec", [RAW, JPEG], ids=["raw", "jpeg"])
def test_windows_equal_those_cut_from_whole_decoded_clips(tmp_path, codec):
  originals = [textured_clip(c, n) for c, n in enumerate([LONG_FRAMES, NUM_FRAMES, LONG_FRAMES])]
  paths = write(originals, tmp_path, codec, clips_per_shard=2)
  # A version 2 shard among them: clip_index counts its clips as it counts those of the others.
  paths.append(str(tmp_path / "old-00000.array_record"))
  write_old_shard(
    paths[-1], [version_2_record(textured_clip(c, LONG_FRAMES), codec) for c in (3, 4)]
  )
  whole = [clip.frames for clip in clips.read_clips(paths)]
  assert len(whole) == 5
  if codec == RAW:  # lossless: what went in
    for got, original in zip(whole, originals):
      np.testing.assert_array_equal(got, original.frames)
  window = 9
  ds = pipeline.window_dataset(
    paths, window_frames=window, audio_margin_frames=0, batch_size=2, seed=1, windows_per_clip=4
  )
  drawn = set()
  for batch in take(iter(ds), 20):
    for b in range(2):
      clip, start = int(batch["clip_index"][b]), int(batch["start"][b])
      drawn.add(clip)
      frames = whole[clip]
      np.testing.assert_array_equal(batch["frames"][b], frames[start : start + window])
      np.testing.assert_array_equal(batch["reference"][b], frames[batch["reference_index"][b]])
  assert drawn == set(range(5))


@pytest.mark.parametrize("with_frames", [True, False])
def test_windows_read_and_decode_only_their_frames_and_reference(
  tmp_path, monkeypatch, with_frames
):
  paths = write([textured_clip(c, LONG_FRAMES) for c in range(4)], tmp_path, JPEG)
  decodes, reads = [], []
  real_decode, real_read = FrameCodec.decode, clips.ClipShard._read

  def counting_decode(codec, data, size):
    decodes.append(1)
    return real_decode(codec, data, size)

  def counting_read(shard, records):
    reads.extend(records)
    return real_read(shard, records)

  monkeypatch.setattr(FrameCodec, "decode", counting_decode)
  monkeypatch.setattr(clips.ClipShard, "_read", counting_read)
  window = 2
  ds = pipeline.window_dataset(
    paths,
    window_frames=window,
    audio_margin_frames=0,
    batch_size=2,
    seed=0,
    windows_per_clip=2,
    num_epochs=1,
    with_frames=with_frames,
  )
  batches = list(ds)
  assert len(batches) == 4
  # Each of the 8 windows decodes its 2 frames and its reference: 3 of a clip's 57.
  assert len(decodes) == (8 * (window + 1) if with_frames else 0)
  assert ("frames" in batches[0] and "reference" in batches[0]) == with_frames
  # And reads its clip's head and, with frames, only the pieces holding them: clip c is records
  # [4c, 4c + 4) of the shard, its head first.
  expected = []
  for batch in batches:
    for clip, start, reference in zip(
      batch["clip_index"], batch["start"], batch["reference_index"]
    ):
      head = 4 * int(clip)
      expected.append(head)
      if with_frames:
        first, last = start // clips.PIECE_FRAMES, (start + window - 1) // clips.PIECE_FRAMES
        expected += [head + 1 + p for p in range(first, last + 1)]
        expected.append(head + 1 + reference // clips.PIECE_FRAMES)
  assert sorted(reads) == sorted(expected)


def test_each_epoch_visits_every_clip_windows_per_clip_times_in_a_new_order(shards):
  ds = pipeline.window_dataset(
    shards,
    window_frames=4,
    audio_margin_frames=0,
    batch_size=1,
    seed=3,
    windows_per_clip=2,
    num_epochs=2,
  )
  order = [int(batch["clip_index"][0]) for batch in ds]
  first, second = order[: 2 * NUM_CLIPS], order[2 * NUM_CLIPS :]
  assert sorted(first) == sorted(second) == sorted(list(range(NUM_CLIPS)) * 2)
  assert first != second


def test_same_seed_same_batches_other_seed_other_batches(shards):
  def first_batches(seed):
    ds = pipeline.window_dataset(
      shards, window_frames=4, audio_margin_frames=1, batch_size=2, seed=seed
    )
    return take(iter(ds), 5)

  assert_batches_equal(first_batches(7), first_batches(7))
  drawn = [(a["clip_index"].tolist(), a["start"].tolist()) for a in first_batches(7)]
  assert drawn != [(a["clip_index"].tolist(), a["start"].tolist()) for a in first_batches(8)]


def test_resume_from_saved_state_gives_the_same_batches(shards):
  def make():
    return pipeline.window_dataset(
      shards, window_frames=4, audio_margin_frames=1, batch_size=2, seed=11, windows_per_clip=2
    )

  iterator = iter(make())
  take(iterator, 7)  # past the first epoch (6 batches), so the epoch-dependent shuffle is covered
  state = json.loads(json.dumps(iterator.get_state()))  # as the checkpoint stores it
  expected = take(iterator, 5)
  resumed = iter(make())
  resumed.set_state(state)
  assert_batches_equal(take(resumed, 5), expected)


@pytest.mark.parametrize("hosts", [2, 3])
def test_hosts_read_their_rows_of_the_same_global_batches(shards, hosts):
  """What makes a multi-host run train on the batches of a one-host run."""

  def batches(index, count):
    ds = pipeline.window_dataset(
      shards,
      window_frames=4,
      audio_margin_frames=1,
      batch_size=6,
      seed=5,
      shard_index=index,
      shard_count=count,
      windows_per_clip=2,
    )
    return take(iter(ds), 4)  # past the first epoch (2 batches)

  per_host = [batches(index, hosts) for index in range(hosts)]
  assert all(batch["frames"].shape[0] == 6 // hosts for batch in per_host[0])
  joined = [
    {key: np.concatenate([host[j][key] for host in per_host]) for key in per_host[0][j]}
    for j in range(4)
  ]
  assert_batches_equal(joined, batches(0, 1))


def test_a_global_batch_that_does_not_split_over_the_hosts_is_refused(shards):
  with pytest.raises(ValueError, match="a global batch of 4 does not split over 3 hosts"):
    pipeline.window_dataset(
      shards, window_frames=4, audio_margin_frames=0, batch_size=4, seed=0, shard_count=3
    )


def test_short_clips_give_their_visits_to_long_ones(tmp_path):
  lengths = [3, 12, 2, 12]
  paths = write((make_clip(c, n) for c, n in enumerate(lengths)), tmp_path)
  ds = pipeline.window_dataset(
    paths,
    window_frames=4,
    audio_margin_frames=0,
    batch_size=1,
    seed=0,
    windows_per_clip=3,
    num_epochs=1,
  )
  drawn = [int(batch["clip_index"][0]) for batch in ds]
  assert len(drawn) == 12 and set(drawn) == {1, 3}


@pytest.mark.parametrize("num_epochs", [None, 1])
def test_only_short_clips_is_a_user_error(tmp_path, num_epochs):
  paths = write((make_clip(c, 3) for c in range(3)), tmp_path)
  ds = pipeline.window_dataset(
    paths, window_frames=4, audio_margin_frames=0, batch_size=2, seed=0, num_epochs=num_epochs
  )
  with pytest.raises(UserError, match="has the 4 frames a training window needs"):
    next(iter(ds))


def test_clips_without_ground_truth_have_no_motion(tmp_path):
  paths = write((make_clip(c, with_motion=False) for c in range(2)), tmp_path)
  ds = pipeline.window_dataset(paths, window_frames=4, audio_margin_frames=0, batch_size=2, seed=0)
  batch = next(iter(ds))
  assert set(batch) == {"frames", "reference", "reference_index", "audio", "clip_index", "start"}


def test_mixing_clips_with_and_without_motion_is_a_user_error(tmp_path):
  paths = write([make_clip(0), make_clip(1, with_motion=False)], tmp_path)
  ds = pipeline.window_dataset(paths, window_frames=4, audio_margin_frames=0, batch_size=2, seed=0)
  with pytest.raises(UserError, match="mix clips with and without ground-truth motion"):
    next(iter(ds))


def test_bad_shards_are_user_errors_naming_the_file(tmp_path):
  path = str(tmp_path / "train-00000.array_record")
  writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
  writer.write(b"JAXTALK\0not a clip")
  writer.close()
  ds = pipeline.window_dataset([path], window_frames=4, audio_margin_frames=0, batch_size=1, seed=0)
  with pytest.raises(UserError, match=f"clip 0 of clip shard {path} is corrupt"):
    next(iter(ds))
  (damaged,) = write([make_clip(0)], tmp_path / "damaged")
  data = bytearray(Path(damaged).read_bytes())
  data[1000:1064] = bytes(64)  # inside the clip's chunk: its checksum no longer matches
  with open(damaged, "wb") as f:
    f.write(data)
  ds = pipeline.window_dataset(
    [damaged], window_frames=4, audio_margin_frames=0, batch_size=1, seed=0
  )
  with pytest.raises(UserError, match=f"clip 0 of clip shard {damaged} is corrupt"):
    next(iter(ds))
  missing = str(tmp_path / "train-00001.array_record")
  with pytest.raises(UserError, match=f"{missing} does not exist"):
    pipeline.window_dataset([missing], window_frames=4, audio_margin_frames=0, batch_size=1, seed=0)
