"""Every command line reports a user's mistake the same way: one line on stderr, exit status 2, no
traceback. And the sampling path does not drag in the trainer."""

import subprocess
import sys
from pathlib import Path

import pytest

import sample
from jaxtalk.bench import __main__ as bench_main
from jaxtalk.bench import attention as bench_attention
from jaxtalk.bench import audio_encoders as bench_audio_encoders
from jaxtalk.data import ingest
from jaxtalk.data.synthtalk import __main__ as synthtalk_main
from jaxtalk.data.synthtalk import demo as synthtalk_demo
from jaxtalk.eval import __main__ as eval_main
from jaxtalk.eval import train_reader, train_syncnet
from jaxtalk.stages import export

ROOT = Path(__file__).parent.parent


def _one_line_error(main, argv, capsys) -> str:
  """Runs an entry point's `main(argv)`; checks the one-line contract and returns the message."""
  try:
    code = main(argv)
  except SystemExit as e:  # argparse exits from inside parse_args
    code = e.code
  err = capsys.readouterr().err.strip()
  assert code == 2, err
  assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
  return err


@pytest.mark.parametrize(
  "argv, message",
  [
    (["--motion-steps", "7"], "motion_steps (7) must be a multiple of chunks_in_flight (2)"),
    (["--motion-steps", "6", "--chunks-in-flight", "4"], "must be a multiple of chunks_in_flight"),
    (["--steps", "0"], "render_steps is 0"),
    (["--cfg", "-1"], "cfg_scale is -1.0"),
    (["--emotion-cfg", "-2"], "emotion_cfg_scale is -2.0"),
    (["--emotion", "bored"], "unknown emotion 'bored'; this model knows auto, neutral, happy"),
    (["--emotion", "sad", "--intensity", "1.5"], "emotion intensity is 1.5"),
    (["--pose-amplitude", "-1"], "pose amplitude is -1.0; use 0 (still)"),
    (["--blink-rate", "100"], "blink rate is 100.0 a minute"),
    (["--steps", "two"], "invalid int value: 'two'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
  ],
)
def test_sample(argv, message, capsys, tmp_path):
  out = tmp_path / "out.mp4"
  assert message in _one_line_error(sample.main, [*argv, "--out", str(out)], capsys)
  assert not out.exists()


@pytest.mark.parametrize(
  "main, argv, message",
  [
    (
      eval_main.main,
      ["--data", "x", "--clips", "0"],
      "--clips and --probe-clips must be at least 1",
    ),
    (eval_main.main, ["--data", "/no/such/data"], "/no/such/data"),
    (eval_main.main, [], "the following arguments are required: --data"),
    (train_reader.main, ["--data", "/no/such/data", "--out", "x"], "/no/such/data"),
    (train_syncnet.main, ["--data", "x", "--out", "y", "--steps", "many"], "invalid int value"),
    (bench_main.main, ["--seconds", "0"], "must be positive"),
    (bench_attention.main, ["--masks", "square"], "invalid choice: 'square'"),
    (bench_audio_encoders.main, ["--model", "bert"], "invalid choice: 'bert'"),
    (ingest.main, ["--videos", "/no/such/videos", "--out", "x"], "/no/such/videos"),
    (synthtalk_main.main, ["--out", "x", "--seconds", "abc"], "invalid float value"),
    (synthtalk_demo.main, [], "required: --out"),
    (export.main, ["--workdir", "/no/such/run", "--out", "x"], "/no/such/run"),
  ],
  ids=lambda v: getattr(v, "__module__", None) if callable(v) else None,
)
def test_library_commands(main, argv, message, capsys):
  assert message in _one_line_error(main, argv, capsys)


@pytest.mark.parametrize(
  "argv, message",
  [
    (["--workdir", "w"], "--config must have a value"),
    (["--config", "configs/none.py", "--workdir", "w"], "No such file or directory"),
    (["--config", "configs/demo.py", "--workdir", "w", "--config.motoin.depth=3"], "motoin"),
    (["--config", "configs/demo.py", "--workdir", "w", "--config.motion.depth=x"], "depth=x"),
    (["--config", "configs/demo.py", "--workdir", "w", "--config.stage=both"], "config.stage"),
    (["--config", "configs/demo.py", "--workdir", "w", "--config.data.train_dir="], "train_dir"),
    (["--config", "configs/demo.py", "--workdir", "w", "extra"], "unexpected arguments: extra"),
  ],
)
def test_train(argv, message, tmp_path):
  # A process of its own: absl parses flags into process-wide state.
  argv = [str(tmp_path / "w") if arg == "w" else arg for arg in argv]
  result = subprocess.run(
    [sys.executable, str(ROOT / "train.py"), *argv],
    capture_output=True,
    text=True,
    cwd=ROOT,
    timeout=300,
  )
  err = result.stderr.strip()
  assert result.returncode == 2, err
  assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
  assert message in err


def test_making_frames_imports_nothing_of_the_trainer():
  """Sampling a frame loads no training stage, loop, data pipeline, grain, orbax or TensorBoard."""
  script = """
import sys
sys.path.insert(0, "tests")
import numpy as np
from jaxtalk.bench.model import random_params
from jaxtalk.inference.generate import SampleOptions, TalkingHead
from tiny_configs import tiny_config

config = tiny_config()
model = TalkingHead(config, random_params(config))
portrait = np.zeros((16, 16, 3), np.uint8)
frames = model.generate(portrait, np.zeros(640 * 3, np.float32), SampleOptions.from_config(config.sample))
assert frames.shape == (3, 16, 16, 3), frames.shape
forbidden = ("jaxtalk.stages", "jaxtalk.training", "jaxtalk.data.pipeline", "grain", "orbax",
             "tensorboardX")
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in forbidden
                      or m.startswith(forbidden))))
"""
  result = subprocess.run(
    [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "", f"imported: {result.stdout}"
