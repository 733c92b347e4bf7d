"""A tiny train-then-sample run through the real entry points, and sample.py's handling of bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

import sample
import train
from configs import demo
from jaxtalk.data.synthtalk.generate import generate_split
from jaxtalk.eval.__main__ import main as evaluate_main
from jaxtalk.eval.train_reader import train_reader
from jaxtalk.media.video_io import iter_frames, probe_video

ROOT = Path(__file__).parent.parent


def tiny_config(data_dir):
  config = demo.get_config()
  config.data.update(train_dir=str(data_dir), image_size=32, windows_per_clip=2)
  config.audio.update(dim=16, layers=1)
  config.motion_encoder.update(base_channels=8, max_channels=16, num_tokens=2, token_dim=4)
  config.renderer.update(base_channels=8, channel_mults=(1, 2), attention_heads=2, cond_dim=32)
  config.renderer.update(warp_channels=8, warp_blocks=1)  # the warp path, through every command
  config.motion.update(dim=32, depth=1, heads=2, chunk_size=2, lookback_chunks=2, audio_radius=2)
  config.renderer_train.update(batch_size=8, num_steps=2, log_every=1, warmup_steps=1)
  config.motion_train.update(
    batch_size=8, num_steps=2, log_every=1, warmup_steps=1, window_frames=8
  )
  config.sample.update(render_steps=2, motion_steps=2, chunks_in_flight=2, batch_frames=8)
  return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """Trains both stages for two steps on four tiny SynthTalk clips and exports the bundle."""
  root = tmp_path_factory.mktemp("e2e")
  generate_split(str(root / "data"), "train", num_clips=4, seconds=1.0, image_size=32, seed=0)
  workdir = root / "run"
  train.run(tiny_config(root / "data"), str(workdir))
  return root, workdir / "bundle"


def test_train_writes_checkpoints_logs_and_bundle(trained):
  root, bundle = trained
  for stage in ("renderer", "motion"):
    assert any((root / "run" / stage / "checkpoints").iterdir())
    lines = (root / "run" / stage / "metrics.jsonl").read_text().splitlines()
    assert np.isfinite(json.loads(lines[-1])["loss"])
  assert (bundle / "params.msgpack").stat().st_size > 1000


def test_sample_writes_video_with_one_frame_per_40ms(trained, tmp_path):
  _, bundle = trained
  image = tmp_path / "face.png"
  import imageio.v3 as iio
  from skimage import data

  iio.imwrite(image, data.astronaut())
  audio = tmp_path / "speech.wav"
  t = np.arange(int(1.23 * 44100)) / 44100
  # Stereo 44.1k
  soundfile.write(audio, np.stack([np.sin(2 * np.pi * 220 * t)] * 2, 1) * 0.3, 44100)
  out = tmp_path / "out.mp4"
  code = sample.main(
    ["--image", str(image), "--audio", str(audio), "--out", str(out), "--checkpoint", str(bundle)]
  )
  assert code == 0
  info = probe_video(str(out))
  assert info.num_frames == 30  # floor(1.23 s * 25)
  assert info.has_audio and info.width == 32

  # The streaming view: a fragmented MP4 on standard output, the same frames.
  streamed = tmp_path / "streamed.mp4"
  with open(streamed, "wb") as stdout:
    done = subprocess.run(
      [sys.executable, "sample.py", "--image", str(image), "--audio", str(audio), "--out", "-"]
      + ["--checkpoint", str(bundle)],
      stdout=stdout,
      stderr=subprocess.PIPE,
      cwd=ROOT,
      timeout=300,
    )
  assert done.returncode == 0, done.stderr.decode()
  assert b"wrote -: 30 frames" in done.stderr
  info = probe_video(str(streamed))
  assert info.num_frames == 30 and info.has_audio
  # The same frames, encoded for low latency. (A fragmented file's length is its audio's, so a
  # constant-rate reader repeats the last frame to fill it: compare the 30 frames there are.)
  # Two H.264 encodings of the same 32 px frames differ most in fine detail (the warped photo
  # keeps its own), so compare means of 4x4 blocks, which the codecs keep.
  live, whole = (
    np.stack(list(iter_frames(str(path))))[:30].astype(float).reshape(30, 8, 4, 8, 4, 3)
    for path in (streamed, out)
  )
  assert np.abs(live.mean(axis=(2, 4)) - whole.mean(axis=(2, 4))).mean() < 2


def _bad_input_cases(tmp_path, bundle):
  silent = tmp_path / "silent.wav"
  soundfile.write(silent, np.zeros(16000), 16000)
  short = tmp_path / "short.wav"
  soundfile.write(short, 0.5 * np.ones(100), 16000)
  corrupt = tmp_path / "corrupt.wav"
  corrupt.write_bytes(b"RIFF....WAVEfmt garbage")
  tiny_image = tmp_path / "tiny.png"
  import imageio.v3 as iio

  iio.imwrite(tiny_image, np.zeros((12, 10, 3), np.uint8))
  broken_bundle = tmp_path / "broken"
  broken_bundle.mkdir()
  (broken_bundle / "config.json").write_text((bundle / "config.json").read_text())
  (broken_bundle / "params.msgpack").write_bytes((bundle / "params.msgpack").read_bytes()[:500])
  return {
    "missing image": (["--image", str(tmp_path / "nope.png")], "does not exist"),
    "silent audio": (["--audio", str(silent)], "silent"),
    "audio shorter than a frame": (["--audio", str(short)], "shorter than one video frame"),
    "corrupt audio": (["--audio", str(corrupt)], str(corrupt)),
    "tiny image": (["--image", str(tiny_image)], "at least 32"),
    "missing checkpoint": (["--checkpoint", str(tmp_path / "none")], "does not exist"),
    "truncated checkpoint": (["--checkpoint", str(broken_bundle)], "corrupt or truncated"),
    "not mp4": (["--out", str(tmp_path / "x.avi")], ".mp4"),
  }


def test_bad_inputs_give_one_line_errors_and_no_output(trained, tmp_path, capsys):
  _, bundle = trained
  import imageio.v3 as iio
  from skimage import data

  image, audio = tmp_path / "face.png", tmp_path / "speech.wav"
  iio.imwrite(image, data.astronaut())
  soundfile.write(audio, 0.3 * np.sin(np.arange(16000) / 10), 16000)
  for name, (args, message) in _bad_input_cases(tmp_path, bundle).items():
    out = tmp_path / "out.mp4"
    base = {
      "--image": str(image),
      "--audio": str(audio),
      "--out": str(out),
      "--checkpoint": str(bundle),
    }
    base.update(dict(zip(args[::2], args[1::2])))
    code = sample.main([x for kv in base.items() for x in kv])
    err = capsys.readouterr().err.strip()
    assert code == 2, name
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, (name, err)
    assert message in err, (name, err)
    assert not Path(base["--out"]).exists(), name


def test_bundle_of_another_config_is_rejected(trained, tmp_path, capsys):
  _, bundle = trained
  other = tmp_path / "other"
  other.mkdir()
  meta = json.loads((bundle / "config.json").read_text())
  meta["config"]["motion"]["dim"] = 48
  (other / "config.json").write_text(json.dumps(meta))
  (other / "params.msgpack").write_bytes((bundle / "params.msgpack").read_bytes())
  code = sample.main(["--checkpoint", str(other), "--out", str(tmp_path / "o.mp4")])
  assert code == 2 and "shape" in capsys.readouterr().err


def test_stage_one_is_scored_alone_from_the_training_run(trained, tmp_path):
  """python -m jaxtalk.eval --renderer-run: the ground-truth rows of a run with only a renderer."""
  root, _ = trained
  generate_split(str(root / "data"), "eval", num_clips=2, seconds=1.6, image_size=32, seed=0)
  train_reader(str(root / "data"), steps=5, batch=8).save(tmp_path / "reader")
  out = tmp_path / "scores.json"
  args = ["--renderer-run", str(root / "run"), "--data", str(root / "data"), "--clips", "2"]
  args += ["--probe-clips", "2", "--reader", str(tmp_path / "reader"), "--json", str(out)]
  assert evaluate_main(args) == 0
  results = json.loads(out.read_text())
  assert set(results["rows"]) == {"gt_frames", "gt_motion"} and "drift" not in results
  assert results["reconstruction"]["psnr"] > 0 and (tmp_path / "scores.png").is_file()


def test_train_cli_reports_missing_data_in_one_line(tmp_path):
  result = subprocess.run(
    [
      sys.executable,
      str(ROOT / "train.py"),
      "--config",
      str(ROOT / "configs" / "demo.py"),
      "--workdir",
      str(tmp_path / "w"),
      f"--config.data.train_dir={tmp_path / 'nothing'}",
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    timeout=300,
  )
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith("error: ")
  assert "Traceback" not in result.stderr
