"""Stage 2's latent cache: encoded once per (data, stage-1 encoder), reused by restarts, encoded
again when either changes, shared out over the processes, and read into the very windows that
encoding in memory gave.

Most tests stand a numpy function in for the encoder (clip c's latents are a function of c), so
they run in milliseconds; the tests of `latent_table` run the tiny stage-1 encoder itself.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_configs import tiny_config

from jaxtalk.data import latent_cache
from jaxtalk.data.clips import Clip, read_clips, write_shards
from jaxtalk.data.frame_codecs import RAW
from jaxtalk.data.pipeline import window_dataset
from jaxtalk.errors import UserError
from jaxtalk.models.factory import Models
from jaxtalk.stages import motion_stage

ROOT = Path(__file__).parent.parent
LENGTHS = [5, 11, 3, 7, 1]
DIM = 3


def fake_latents(clip: int, dtype=np.float32) -> np.ndarray:
  return (1000 * clip + np.arange(LENGTHS[clip] * DIM)).reshape(-1, DIM).astype(dtype)


def fake_encoder(calls: list, dtype=np.float32):
  """encode(i, n) of the fake encoder, noting in `calls` which clips it was asked for."""

  def encode(index, count):
    clips = list(range(index, len(LENGTHS), count))
    calls.append(clips)
    return (fake_latents(c, dtype) for c in clips)

  return encode


def failing_encoder(index, count):
  raise AssertionError("the cache should have been reused, not encoded again")


def assert_holds_fake_latents(cache, dtype=np.float32):
  assert len(cache) == len(LENGTHS)
  for clip in range(len(LENGTHS)):
    np.testing.assert_array_equal(cache[clip], fake_latents(clip, dtype))


def test_written_once_then_reused(tmp_path):
  calls = []
  cache = latent_cache.open_or_build(tmp_path, {"data": "a"}, fake_encoder(calls))
  assert calls == [list(range(len(LENGTHS)))]
  assert_holds_fake_latents(cache)
  manifest = json.loads((cache.directory / latent_cache.MANIFEST).read_text())
  assert manifest["inputs"] == {"data": "a"}
  assert (manifest["clip_count"], manifest["frame_count"]) == (len(LENGTHS), sum(LENGTHS))
  assert (manifest["latent_dim"], manifest["dtype"]) == (DIM, "float32")
  (part,) = cache.directory.glob("*.bin")
  assert part.stat().st_size == sum(LENGTHS) * DIM * 4  # rows only, nothing per frame besides

  again = latent_cache.open_or_build(tmp_path, {"data": "a"}, failing_encoder)
  assert again.directory == cache.directory
  assert_holds_fake_latents(again)


def test_other_inputs_are_another_cache_and_the_old_one_stays(tmp_path):
  first = latent_cache.open_or_build(tmp_path, {"data": "a"}, fake_encoder([]))
  calls = []
  second = latent_cache.open_or_build(tmp_path, {"data": "b"}, fake_encoder(calls))
  assert calls and second.directory != first.directory
  assert (first.directory / latent_cache.MANIFEST).is_file()


def test_a_cache_without_its_manifest_is_built_again(tmp_path):
  first = latent_cache.open_or_build(tmp_path, {"data": "a"}, fake_encoder([]))
  # What a build killed while writing its part leaves: no manifest, a partial part.
  (first.directory / latent_cache.MANIFEST).unlink()
  (first.directory / "part-00000-of-00001.bin.partial").write_bytes(b"half")
  calls = []
  cache = latent_cache.open_or_build(tmp_path, {"data": "a"}, fake_encoder(calls))
  assert calls
  assert_holds_fake_latents(cache)
  assert sorted(p.name for p in cache.directory.iterdir()) == [
    latent_cache.MANIFEST,
    "part-00000-of-00001.bin",
    "part-00000-of-00001.lengths.npy",
  ]


def test_a_damaged_part_is_reported_by_name(tmp_path):
  cache = latent_cache.open_or_build(tmp_path, {"data": "a"}, fake_encoder([]))
  (part,) = cache.directory.glob("*.bin")
  part.write_bytes(part.read_bytes()[:-4])
  with pytest.raises(UserError, match=f"{part.name} does not match its manifest"):
    latent_cache.open_or_build(tmp_path, {"data": "a"}, failing_encoder)


def test_an_unwritable_cache_folder_names_the_config_key(tmp_path):
  (tmp_path / "data").write_text("a file where the cache folder would go")
  with pytest.raises(UserError, match="set motion_train.latent_cache_dir to a writable folder"):
    latent_cache.open_or_build(tmp_path / "data" / "latents", {"data": "a"}, fake_encoder([]))


def test_bfloat16_latents_are_stored_as_such(tmp_path):
  cache = latent_cache.open_or_build(tmp_path, {"data": "a"}, fake_encoder([], jnp.bfloat16))
  assert cache.manifest["dtype"] == "bfloat16"
  assert_holds_fake_latents(cache, jnp.bfloat16)


_PROCESS = """
import json, sys
from jaxtalk.parallel.distributed import ProcessSpec, join_run

address, index, root = sys.argv[1:]
join_run(ProcessSpec(address, 2, int(index)))
from jaxtalk.data import latent_cache
from test_latent_cache import fake_encoder

calls = []
cache = latent_cache.open_or_build(root, {"data": "a"}, fake_encoder(calls))
print(json.dumps({"calls": calls, "clips": len(cache)}))
"""


def test_two_processes_each_encode_their_share(tmp_path):
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{s.getsockname()[1]}"
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", PYTHONPATH=f"{ROOT / 'tests'}:{ROOT}")
  procs = [
    subprocess.Popen(
      [sys.executable, "-c", _PROCESS, address, str(i), str(tmp_path)],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  outputs = [proc.communicate(timeout=300)[0] for proc in procs]
  assert [proc.returncode for proc in procs] == [0, 0], outputs
  results = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
  assert [r["calls"] for r in results] == [[[0, 2, 4]], [[1, 3]]]
  assert all(r["clips"] == len(LENGTHS) for r in results)
  assert "encoded 5 clips (27 frames) into latent cache" in outputs[0]
  # Read back by one process, as a run resumed on another number of hosts would.
  assert_holds_fake_latents(latent_cache.open_or_build(tmp_path, {"data": "a"}, failing_encoder))


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
  """(models, encoder params, encoder config, shard paths) of clips in raw-frame shards."""
  config = tiny_config()
  rng = np.random.default_rng(0)
  clips = [
    Clip(
      frames=rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
      audio=rng.uniform(-1, 1, n * 640).astype(np.float32),
      meta={"clip_id": str(i)},
    )
    for i, n in enumerate(LENGTHS)
  ]
  data_dir = tmp_path_factory.mktemp("data")
  paths = write_shards(clips, str(data_dir), "train", clips_per_shard=2, frame_codec=RAW)
  models = Models.from_config(config)
  params = models.motion_encoder.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))
  return models, params["params"], config.motion_encoder.to_dict(), paths


def counting(monkeypatch) -> list:
  """Counts the calls of the stage's encoder from here on."""
  calls, encode = [], motion_stage.encode_clips
  monkeypatch.setattr(
    motion_stage, "encode_clips", lambda *args, **kw: calls.append(1) or encode(*args, **kw)
  )
  return calls


def test_windows_from_the_cache_equal_those_encoded_in_memory(stage1, tmp_path, monkeypatch):
  models, params, encoder_config, paths = stage1
  frames = (clip.frames for clip in read_clips(paths))
  in_memory = list(motion_stage.encode_clips(models, params, frames))
  calls = counting(monkeypatch)
  cache = motion_stage.latent_table(models, params, encoder_config, paths, tmp_path)
  assert len(calls) == 1
  for clip, latents in enumerate(in_memory):
    np.testing.assert_array_equal(cache[clip], latents)

  window_frames = 3
  windows = window_dataset(
    paths,
    window_frames=window_frames,
    audio_margin_frames=1,
    batch_size=4,
    seed=0,
    with_frames=False,
    acting=models.motion.acting_layout,
  )
  batches = [batch for batch, _ in zip(windows, range(4))]
  for batch in batches:
    expected = motion_stage.with_latents(in_memory, window_frames)(batch)
    got = motion_stage.with_latents(cache, window_frames)(batch)
    assert got.keys() == expected.keys()
    for key in expected:
      np.testing.assert_array_equal(got[key], expected[key])

  # A restart: the same data and checkpoint read the cache and encode nothing.
  again = motion_stage.latent_table(models, params, encoder_config, paths, tmp_path)
  assert len(calls) == 1 and again.directory == cache.directory


def test_another_checkpoint_or_changed_data_encode_again(stage1, tmp_path, monkeypatch):
  models, params, encoder_config, paths = stage1
  first = motion_stage.latent_table(models, params, encoder_config, paths, tmp_path)
  calls = counting(monkeypatch)

  retrained = jax.tree.map(lambda x: x + 1e-3, params)
  second = motion_stage.latent_table(models, retrained, encoder_config, paths, tmp_path)
  assert len(calls) == 1 and second.directory != first.directory
  assert not np.array_equal(second[0], first[0])

  stat = os.stat(paths[0])
  os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a shard rewritten
  third = motion_stage.latent_table(models, params, encoder_config, paths, tmp_path)
  assert len(calls) == 2 and third.directory not in (first.directory, second.directory)
  np.testing.assert_array_equal(third[0], first[0])
