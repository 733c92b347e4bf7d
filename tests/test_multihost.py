"""Two processes of four simulated CPU devices each, on localhost, against one process of eight.

Each run of the tiny config is `train.py` as a user starts it on every host (explicit coordinator
flags, gloo collectives). The batches are global, each host loading its rows, so both layouts must
train the same model: the same losses at every step, the same final parameters, the same bundle.
A SIGTERM to one host (a preemption notice) stops both at the same step, saved; the same command
resumes them to the parameters of a run never stopped (the training loop on the toy job of
tests/toy_job.py, whose steps take milliseconds, so the notice lands mid-run).

No persistent compilation cache here: jax shares process 0's entries with the other processes,
and a CPU executable so shared no longer connects to its peers.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import flax.serialization
import jax
import numpy as np
import pytest

from jaxtalk.data.synthtalk.generate import generate_split
from jaxtalk.inference.bundle import PARAMS_FILE
from jaxtalk.models.factory import Models
from jaxtalk.stages import STAGES
from jaxtalk.training.checkpoint import load_params

ROOT = Path(__file__).parent.parent
STEPS = 4

CONFIG_FILE = """
from tiny_configs import tiny_config

def get_config():
  config = tiny_config()
  config.data.update(train_dir={data!r}, windows_per_clip=2)
  config.renderer.warp_channels = 0  # what costs the compiles here is the layout, not the warp
  for section in (config.renderer_train, config.motion_train):
    section.update(batch_size=8, num_steps={steps}, log_every=1, warmup_steps=1, checkpoint_every=2)
  return config
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Run:
  """`argv` in `processes` processes of 8 / processes devices each, on this machine, each given
  the run's coordinator flags (`coordinator(address, count, index)` -> its arguments)."""

  def __init__(self, root: Path, name: str, processes: int, argv: list, coordinator=None):
    self.workdir = root / name
    env = dict(
      os.environ,
      JAX_PLATFORMS="cpu",
      XLA_FLAGS=f"--xla_force_host_platform_device_count={8 // processes}",
      PYTHONPATH=f"{ROOT / 'tests'}:{ROOT}",
    )
    address = f"127.0.0.1:{_free_port()}"
    self.logs = [root / f"{name}.{i}.log" for i in range(processes)]
    self.procs = [
      subprocess.Popen(
        [sys.executable, *argv, *(coordinator(address, processes, i) if processes > 1 else [])],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
      )
      for i, log in enumerate(self.logs)
    ]

  def wait(self, timeout=900) -> list[int]:
    return [proc.wait(timeout) for proc in self.procs]

  def output(self, i=0) -> str:
    return self.logs[i].read_text()

  def losses(self, stage: str = "") -> dict:
    lines = (self.workdir / stage / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines)}


def train_py(root: Path, name: str, processes: int) -> Run:
  argv = [str(ROOT / "train.py"), f"--config={root / 'tiny.py'}", f"--workdir={root / name}"]
  flags = lambda address, count, index: [
    f"--coordinator_address={address}",
    f"--num_processes={count}",
    f"--process_id={index}",
  ]
  return Run(root, name, processes, argv, flags)


def toy_job(root: Path, name: str, num_steps: int) -> Run:
  argv = [str(ROOT / "tests" / "toy_job.py"), str(root / name), str(num_steps)]
  return Run(root, name, 2, argv, lambda address, count, index: [address, str(count), str(index)])


def _config(root):
  """The config the runs were given."""
  from jaxtalk.bench.model import load_config_file

  sys.path.insert(0, str(ROOT / "tests"))
  return load_config_file(root / "tiny.py")


def _assert_trees_close(a, b):
  """Equal parameters, up to the order in which devices sum gradients.

  Measured over the whole tree: a few parameters get no gradient at all (a bias under a norm, a
  key bias under the softmax), and there Adam, dividing by the gradient's own tiny size, turns
  summation noise into steps of up to the learning rate; every other parameter agrees to 1e-8.
  """
  flat = [np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)]) for t in (a, b)]
  assert jax.tree.structure(a) == jax.tree.structure(b)
  assert np.linalg.norm(flat[0] - flat[1]) <= 1e-5 * np.linalg.norm(flat[1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("multihost")
  generate_split(str(root / "data"), "train", num_clips=4, seconds=1.0, image_size=16, seed=0)
  (root / "tiny.py").write_text(CONFIG_FILE.format(data=str(root / "data"), steps=STEPS))
  two, one = train_py(root, "two", 2), train_py(root, "one", 1)
  assert two.wait() == [0, 0], two.output(0) + two.output(1)
  assert one.wait() == [0], one.output()
  return root, one, two


def test_two_processes_train_what_one_process_trains(runs):
  root, one, two = runs
  assert "2 process(es), 8 cpu device(s)" in two.output(0)
  assert "1 process(es), 8 cpu device(s)" in one.output()
  config = _config(root)
  for stage in STAGES:
    assert sorted(two.losses(stage)) == list(range(1, STEPS + 1))
    np.testing.assert_allclose(
      list(two.losses(stage).values()), list(one.losses(stage).values()), rtol=1e-5
    )
    groups = Models.from_config(config).abstract_params(STAGES[stage].trains)
    a, b = (load_params(run.workdir / stage, groups) for run in (one, two))
    _assert_trees_close(a, b)


def test_the_bundle_is_exported_once_and_equals_the_one_process_bundle(runs):
  _, one, two = runs
  assert "sampling bundle" in two.output(0) and "sampling bundle" not in two.output(1)
  a, b = (
    flax.serialization.msgpack_restore((run.workdir / "bundle" / PARAMS_FILE).read_bytes())
    for run in (one, two)
  )
  _assert_trees_close(a, b)
  assert not list((two.workdir / "bundle").glob("*.tmp*"))


def test_a_preempted_two_process_run_resumes_to_the_same_parameters(tmp_path):
  from toy_job import ToyJob

  steps = 100
  whole = toy_job(tmp_path, "whole", steps)
  stopped = toy_job(tmp_path, "preempted", steps)
  deadline = time.monotonic() + 300
  # After the first step: a signal in the middle of gloo's first connections breaks them (on a
  # pod the chips' collectives do not go through sockets).
  while "step 1/" not in stopped.output(0):
    assert time.monotonic() < deadline and stopped.procs[0].poll() is None, stopped.output(0)
    time.sleep(0.02)
  stopped.procs[1].send_signal(signal.SIGTERM)  # the preemption notice reaches one host
  assert stopped.wait() == [143, 143], stopped.output(0) + stopped.output(1)
  assert whole.wait() == [0, 0], whole.output(0) + whole.output(1)
  saved = sorted(int(p.name) for p in (stopped.workdir / "checkpoints").iterdir())
  assert len(saved) == 1 and 1 <= saved[0] < steps, saved
  assert f"stopped at step {saved[0]}" in stopped.output(0)

  resumed = toy_job(tmp_path, "preempted", steps)
  assert resumed.wait() == [0, 0], resumed.output(0) + resumed.output(1)
  assert f"resumed from step {saved[0]}" in resumed.output(0)
  assert resumed.losses() == whole.losses()  # the same devices sum in the same order: exact
  groups = jax.eval_shape(ToyJob(steps).init, jax.random.key(0))
  a, b = (load_params(run.workdir, groups, use_ema=False) for run in (whole, resumed))
  jax.tree.map(np.testing.assert_array_equal, a, b)
