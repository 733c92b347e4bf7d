"""The data benchmarks (frame codecs of shards, loader throughput) run end to end on tiny inputs."""

import json

import pytest
from tiny_configs import tiny_config

from jaxtalk.bench import loader, shards
from jaxtalk.data import clips


def test_shards_bench_measures_every_codec_on_both_kinds_of_frames(tmp_path, capsys):
  out = tmp_path / "shards.json"
  assert shards.main(["--sizes", "16", "--frames", "8", "--json", str(out)]) == 0
  results = json.loads(out.read_text())
  assert [(case["source"], case["size"]) for case in results["cases"]] == [
    ("synthtalk", 16),
    ("photo", 16),
  ]
  table = capsys.readouterr().out
  for case in results["cases"]:
    codecs = case["codecs"]
    assert codecs["raw"]["bytes_per_minute"] == 16 * 16 * 3 * 25 * 60
    assert codecs["raw"]["psnr"] is None  # lossless
    assert codecs["jpeg 90"]["bytes_per_minute"] < codecs["jpeg 95 (default)"]["bytes_per_minute"]
    assert 0 <= codecs["raw in a shard (zstd)"]["bytes_per_minute"] < 2 * 65536 * 25 * 60 / 8
    for name, measures in codecs.items():
      assert name in table
      if "psnr" in measures:  # the codecs that decode
        assert measures["bytes_per_minute"] > 0 and measures["decode_fps"] > 0
      if measures.get("psnr") is not None:
        assert 15 < measures["psnr"] < 60  # lossy, and decoded into the right frames
  assert "h264 crf 18, chunks of 8" in results["cases"][0]["codecs"]


@pytest.fixture
def tiny_gpu256(monkeypatch):
  """The loader bench reads configs/gpu256.py; here it gets the tiny config (16x16 frames, batches
  of 2, motion windows of 8 frames)."""
  monkeypatch.setattr(loader, "load_config_file", lambda path: tiny_config())


def test_loader_bench_reads_both_stages_batches_and_says_what_bounds_training(
  tiny_gpu256, tmp_path, capsys
):
  out = tmp_path / "loader.json"
  argv = ["--clips", "2", "--clip-seconds", "0.5", "--batches", "2", "--renderer-step", "1e-9"]
  assert loader.main([*argv, "--json", str(out)]) == 0
  results = json.loads(out.read_text())
  renderer, motion = results["stages"]["renderer"], results["stages"]["motion"]
  assert renderer["host_batch"] == motion["host_batch"] == 2
  assert renderer["windows_per_second"] > 0 and motion["batch_seconds"] > 0
  assert "data-bound" in renderer["verdict"]  # no loader feeds a step of a nanosecond
  assert motion["verdict"].startswith("keeps up with steps of >=")
  assert "2 made-up clips of 0.5 s, jpeg frames" in capsys.readouterr().out


def test_loader_bench_reads_given_shards_as_one_host_of_several(tiny_gpu256, tmp_path, capsys):
  loader.make_clips(str(tmp_path), 3, 0.4, 16, "raw")
  assert len(list(clips.read_clips(clips.shard_paths(str(tmp_path), "train")))) == 3
  argv = ["--data", str(tmp_path), "--hosts", "2", "--batches", "1", "--json", str(tmp_path / "r")]
  assert loader.main(argv) == 0
  results = json.loads((tmp_path / "r").read_text())
  assert {speed["host_batch"] for speed in results["stages"].values()} == {1}
  assert f"train shards of {tmp_path}" in capsys.readouterr().out
