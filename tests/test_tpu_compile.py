"""Ahead-of-time compilation for TPU on this CPU (`jaxtalk.bench.compile`), with libtpu's compiler.

Unlike exporting (test_kernels_lowering.py), this runs the whole TPU compiler: XLA's SPMD
partitioning over a slice's chips, Mosaic's layouts and VMEM budgets for the Pallas kernels, and
the memory plan of every program against a chip's HBM. Nothing executes. The tiny config keeps
each compile to seconds; the demo and pod configs' train steps take one to two minutes each.
"""

import json
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import SingleDeviceSharding

from jaxtalk.bench import compile as aot
from jaxtalk.bench.model import load_config_file
from jaxtalk.kernels.flash import flash_attention
from jaxtalk.kernels.masks import BlockCausalMask, FullMask, LocalAudioMask
from jaxtalk.kernels.pallas_tpu import PallasTpu
from jaxtalk.parallel.mesh import make_mesh


@pytest.fixture(scope="module")
def libtpu():
  pytest.importorskip(
    "libtpu", reason="libtpu, the TPU compiler: pip install 'jaxtalk[tpu]'", exc_type=ImportError
  )


# The tiny config with batches that divide over the 4 chips of a v5p-8.
TINY_CONFIG_FILE = """
from tiny_configs import tiny_config

def get_config():
  config = tiny_config()
  config.renderer_train.batch_size = 4
  config.motion_train.batch_size = 4
  return config
"""


@pytest.fixture(scope="module")
def tiny_config_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("config") / "tiny.py"
  path.write_text(TINY_CONFIG_FILE)
  return path


def test_slice_names_follow_google_naming():
  # v4/v5p names count TensorCores (two per chip), v5e/v6e names count chips.
  assert aot.parse_topology("v5p-8") == ("v5p", (2, 2, 1))
  assert aot.parse_topology("v5p-256") == ("v5p", (4, 4, 8))
  assert aot.parse_topology("v5p-1024") == ("v5p", (8, 8, 8))
  assert aot.parse_topology("v4-64") == ("v4", (2, 4, 4))
  assert aot.parse_topology("v6e-8") == ("v6e", (2, 4))
  assert aot.parse_topology("v5litepod-256") == ("v5e", (16, 16))
  assert aot.parse_topology("v5p:4x4x12") == ("v5p", (4, 4, 12))
  assert aot.parse_topology("v6e-1") == ("v6e", (1, 1))


@pytest.mark.parametrize("topology", ["v5p-12", "v9-8", "v6e:4x4x4", "v5p"])
def test_a_bad_topology_is_one_line_and_exit_status_2(topology, capsys):
  argv = ["--config", "configs/demo.py", "--topology", topology]
  assert aot.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: unknown TPU topology") and "\n" not in err


def test_without_libtpu_the_error_says_what_to_install(monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, "libtpu", None)  # `import libtpu` now fails
  assert aot.main(["--config", "configs/demo.py", "--topology", "v5p-8"]) == 2
  assert "pip install 'jaxtalk[tpu]'" in capsys.readouterr().err


def test_the_pod_mesh_lays_out_over_a_v5p_256(libtpu):
  """pod512's tensor=2 has no whole axis of the 4x4x8 chip torus; the mesh splits one."""
  mesh = make_mesh({"data": -1, "fsdp": 4, "tensor": 2}, devices=aot.tpu_slice("v5p-256").devices)
  assert dict(mesh.shape) == {"data": 16, "fsdp": 4, "tensor": 2}
  assert len({d.id for d in mesh.devices.flat}) == 128


def test_a_batch_that_does_not_divide_the_data_axes_is_a_user_error(libtpu, capsys):
  # The demo's batch of 16 over a v5p-64's 32 chips.
  argv = ["--config", "configs/demo.py", "--topology", "v5p-64", "--stage", "motion"]
  assert aot.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert "motion_train.batch_size 16 does not divide over the 32 batch shards" in err
  assert "\n" not in err


def test_every_program_compiles_for_a_v5p_8_and_the_table_shows_it(
  libtpu, tiny_config_file, tmp_path, capsys
):
  """One run of the command (the programs compile once): both train steps over 4 chips, the
  sampler on one; memory positive and within a v5p chip's HBM; the table and its JSON agree."""
  out = tmp_path / "compile.json"
  argv = ["--config", str(tiny_config_file), "--topology", "v5p-8", "--step-time", "0.5"]
  argv += ["--json", str(out)]
  assert aot.main(argv) == 0
  table = capsys.readouterr().out
  results = json.loads(out.read_text())
  hbm = 95 * 2**30
  assert results["topology_name"] == "v5p:2x2x1" and results["chips"] == 4
  assert results["mesh"] == "data=4 fsdp=1 tensor=1"
  names = [r["program"].split(" (")[0] for r in results["programs"]]
  assert names[:2] == ["train step, renderer", "train step, motion"]
  assert names[2:] == ["sample: audio block", "sample: motion advance", "sample: render"]
  for r in results["programs"]:
    assert r["error"] is None, r
    assert r["memory"]["arguments"] > 0 and 0 < r["memory"]["total"] < hbm
    assert r["flops_per_chip"] > 0
    assert r["program"] in table
  train_steps = [r for r in results["programs"] if r["train_step"]]
  assert [r["chips"] for r in train_steps] == [4, 4]
  for r in train_steps:
    # The donated state: its outputs reuse the argument buffers.
    assert r["memory"]["aliased"] > 0
    assert r["mfu"] == pytest.approx(r["flops_per_chip"] / (0.5 * 459e12))
  samplers = [r for r in results["programs"] if not r["train_step"]]
  assert [r["chips"] for r in samplers] == [1, 1, 1]
  # The advance's evaluations and the renderer's Euler steps are loops of static length: scans,
  # whose every step counts.
  assert not any(r["flops_lower_bound"] for r in results["programs"])
  assert "global batch over the whole slice" in table and "MFU" in table


def _kernel_results(hlo: str) -> list[tuple[int, ...]]:
  """The shapes of every Pallas kernel's results in a compiled program's HLO."""
  results = [
    line.split("custom-call(")[0] for line in hlo.splitlines() if "tpu_custom_call" in line
  ]
  return [
    tuple(int(n) for n in dims.split(","))
    for result in results
    for dims in re.findall(r"\[([\d,]+)\]", result)
  ]


def _shrunk(config_file: str, image_size: int, batch_size: int):
  """A shipped config as is (mesh, sharding rules, scan, remat, dtypes, widths, depths) but for
  its frames' size and its global batches: compiles of minutes on two cores, not a quarter hour."""
  config = load_config_file(Path(config_file))
  config.data.image_size = image_size
  config.renderer_train.batch_size = config.motion_train.batch_size = batch_size
  return config


def test_the_demo_configs_train_steps_compile_with_the_kernels_over_a_v5p_8(libtpu):
  """Both stages over 4 chips (data=4), at 32 px. XLA cannot partition a Mosaic kernel;
  `jaxtalk.kernels.attention` runs each under a shard_map, on its chip's examples."""
  config = _shrunk("configs/demo.py", image_size=32, batch_size=16)
  mesh = make_mesh(config.mesh, devices=aot.tpu_slice("v5p-8").devices)
  for stage in ("renderer", "motion"):
    result = aot.compile_program(aot.train_step_program(config, stage, mesh))
    assert result.error is None and 0 < result.memory["total"] < 95 * 2**30, result
    assert result.flops_per_chip > 0 and not result.flops_lower_bound


def test_the_pod_configs_motion_train_step_compiles_over_fsdp_and_tensor_axes(libtpu):
  """pod512's 24 scanned blocks with remat over a v5p-16's 8 chips: fsdp=4 splits the batch of 8,
  tensor=2 the 16 heads. Every kernel runs on one chip's 2 examples and 8 heads. (pod512's
  renderer takes over ten minutes to compile even at 64 px: the README has its numbers.)"""
  config = _shrunk("configs/pod512.py", image_size=64, batch_size=8)
  mesh = make_mesh(config.mesh, devices=aot.tpu_slice("v5p-16").devices)
  assert dict(mesh.shape) == {"data": 1, "fsdp": 4, "tensor": 2}
  program = aot.train_step_program(config, "motion", mesh)
  with aot.attention_as_on_tpu("auto"):
    compiled = program.trace().lower().compile()
  shapes = _kernel_results(compiled.as_text())
  assert shapes and {shape[:2] for shape in shapes} == {(2, config.motion.heads // 2)}


KERNEL_MASKS = {
  "full": FullMask(jnp.array([150, 200])),  # per-example key lengths
  "block_causal": BlockCausalMask(16, q_prefix=1, k_prefix=1, lookback_chunks=8),
  "audio_radius": LocalAudioMask(8, rate_num=2),
}


@pytest.mark.parametrize("mask", KERNEL_MASKS)
@pytest.mark.parametrize("chip", ["v5p:1x1x1", "v6e:1x1"])
def test_pallas_attention_compiles_forward_and_backward_for_tpu(libtpu, chip, mask):
  """All three kernels (forward, query gradient, key/value gradient), bf16, head dim 128, grouped
  query heads, lengths that are not whole blocks. The audio clip is long enough that a block
  reaches fewer blocks than there are: grids shorter than the lists of the whole mask."""
  on_chip = SingleDeviceSharding(aot.tpu_slice(chip).devices[0])
  queries, keys = (1200, 2400) if mask == "audio_radius" else (200, 200)
  q = jax.ShapeDtypeStruct((2, queries, 4, 128), jnp.bfloat16, sharding=on_chip)
  kv = jax.ShapeDtypeStruct((2, keys, 2, 128), jnp.bfloat16, sharding=on_chip)

  def loss(q, k, v):
    return flash_attention(PallasTpu(), q, k, v, KERNEL_MASKS[mask]).astype(jnp.float32).sum()

  grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
  lowered = grads.lower(q, kv, kv)
  assert lowered.as_text().count("tpu_custom_call") == 3
  compiled = lowered.compile()
  assert compiled.memory_analysis().generated_code_size_in_bytes > 0
