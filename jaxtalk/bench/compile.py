"""Compile jaxtalk's programs for a TPU slice on this machine: per-chip memory and FLOPs, no TPU.

  python -m jaxtalk.bench.compile --config configs/pod512.py --topology v5p-256 \
      [--stage renderer|motion|sample|all] [--step-time S] [--attention auto|reference]

The TPU compiler ships in the libtpu wheel (`pip install 'jaxtalk[tpu]'`) and needs no TPU to run:
`jax.experimental.topologies` describes the chips of a named slice, the config's mesh is laid over
them, and every program is lowered from abstract values (nothing is allocated) and compiled, Pallas
TPU (Mosaic) kernels included. Nothing executes. Programs:

- each stage's train step, built as the training loop builds it (`make_train_step` with the
  stage's loss, optimizer, EMA and donated state; the config's mesh and sharding rules), over the
  whole slice;
- the streaming sampler's programs (`jaxtalk.inference.stream`: an audio block, a motion advance,
  a chunk of rendered frames) on one chip, unsharded, as inference runs them; none depends on the
  length of the audio.

Per program: the memory the compiler plans per chip against the chip's HBM, the model FLOPs of one
call (counted from its jaxpr, `jaxtalk.bench.flops`: XLA's own count takes a scanned stack of layers
for one layer and a Pallas kernel for nothing), and with --step-time the model FLOPs utilisation a
train step of that duration would mean. A program that does not fit or does not compile is reported
as such, with the compiler's message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import sys
import time
from collections.abc import Callable
from unittest import mock

import jax
import jax.numpy as jnp

from jaxtalk.bench.flops import model_flops
from jaxtalk.cli import argument_parser, print_report, run_command
from jaxtalk.errors import UserError

# The models, stages and libtpu are imported where they are used, so that a mistyped option or
# topology is reported at once.

STAGE_CHOICES = ("renderer", "motion", "sample", "all")
GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
  """One TPU generation, as Google's Cloud TPU pages (cloud.google.com/tpu/docs/<generation>)
  give it: HBM per chip and bfloat16 peak per chip."""

  hbm_gib: float
  peak_bf16_tflops: float
  cores_per_chip: int  # TensorCores; "v5p-N" counts these, "v6e-N" counts chips (one core each)
  grid_dims: int  # 3: the chips form a 3D torus; 2: a 2D one
  megacore: bool  # both TensorCores of a chip form one JAX device (libtpu's "megacore" config)


# v4: 32, 275 TFLOP/s; v5e: 16, 197; v5p: 95, 459; v6e: 32, 918. Google's pages give v5p's HBM in
# GiB and the others' in GB; GiB is what they mean (the TPU compiler's own limit for a v5e is
# 15.75 GiB, 16 GiB less what the runtime keeps), so the headroom here is good to a few percent.
CHIPS = {
  "v4": Chip(hbm_gib=32, peak_bf16_tflops=275, cores_per_chip=2, grid_dims=3, megacore=True),
  "v5e": Chip(hbm_gib=16, peak_bf16_tflops=197, cores_per_chip=1, grid_dims=2, megacore=False),
  "v5p": Chip(hbm_gib=95, peak_bf16_tflops=459, cores_per_chip=2, grid_dims=3, megacore=True),
  "v6e": Chip(hbm_gib=32, peak_bf16_tflops=918, cores_per_chip=1, grid_dims=2, megacore=False),
}
# Google's accelerator-type name of a v5e slice; libtpu's topology names say v5e.
ALIASES = {"v5litepod": "v5e"}

TOPOLOGY_HELP = (
  "TPU slice as Google names it, <generation>-<N>, for generations "
  f"{', '.join(CHIPS)}: for v4 and v5p N counts TensorCores, two per chip (v5p-8 is 4 chips, "
  "2x2x1; v5p-256 is 128 chips, 4x4x8), for v5e (also v5litepod-N) and v6e N counts chips "
  "(v6e-16 is 4x4). N must give one chip or a power of two of chips from 4 up, laid out in the "
  "usual grid (from 2x2x1, the shortest side doubled, the last of equal sides first). Any other "
  "shape by its grid: v5p:4x4x12, v5p:1x1x1"
)


# ------------------------------------------------------------------------------------- slices
@dataclasses.dataclass(frozen=True)
class TpuSlice:
  generation: str
  grid: tuple[int, ...]  # chips along each axis of the torus
  devices: tuple  # jax compile-only devices, one per chip

  @property
  def chip(self) -> Chip:
    return CHIPS[self.generation]

  @property
  def topology_name(self) -> str:
    return f"{self.generation}:{'x'.join(map(str, self.grid))}"


def _usual_grid(chips: int, dims: int) -> tuple[int, ...]:
  """The grid Google gives a slice of `chips` chips (1, or a power of two from one host's 4):
  from 2x2(x1), double the shortest side, the last of equal ones first."""
  if chips == 1:
    return (1,) * dims
  grid = [2, 2] + [1] * (dims - 2)
  while math.prod(grid) < chips:
    shortest = min(grid)
    grid[dims - 1 - grid[::-1].index(shortest)] *= 2
  return tuple(grid)


def parse_topology(name: str) -> tuple[str, tuple[int, ...]]:
  """ "v5p-256" or "v5p:4x4x8" -> (generation, chip grid)."""
  match = re.fullmatch(r"([a-z0-9]+?)(?:-(\d+)|:(\d+(?:x\d+)*))", name.strip().lower())
  generation = match and ALIASES.get(match[1], match[1])
  if generation not in CHIPS:
    raise UserError(
      f"unknown TPU topology {name!r}; name a slice like v5p-256 or v6e:4x4 "
      f"(generations: {', '.join(CHIPS)})"
    )
  chip = CHIPS[generation]
  if match[3]:
    grid = tuple(int(n) for n in match[3].split("x"))
    if len(grid) != chip.grid_dims or 0 in grid:
      raise UserError(
        f"unknown TPU topology {name!r}: a {generation} grid has {chip.grid_dims} positive sizes"
      )
    return generation, grid
  count = int(match[2])
  chips, remainder = divmod(count, chip.cores_per_chip)
  if remainder or chips in (0, 2) or chips & (chips - 1):
    counted = "TensorCores" if chip.cores_per_chip > 1 else "chips"
    raise UserError(
      f"unknown TPU topology {name!r}: {generation}-N counts {counted}, and N must give one chip "
      f"or a power of two of chips from 4 up; name any other slice by its grid, e.g. "
      f"{generation}:{'x'.join(['4'] * chip.grid_dims)}"
    )
  return generation, _usual_grid(chips, chip.grid_dims)


def require_libtpu() -> None:
  try:
    import libtpu  # noqa: F401  (the TPU compiler; jax loads it by name)
  except ImportError:
    raise UserError(
      "compiling for TPU needs libtpu, the TPU compiler: pip install 'jaxtalk[tpu]'"
    ) from None


def tpu_slice(name: str) -> TpuSlice:
  """The compile-only devices of the slice `name` (see TOPOLOGY_HELP); no TPU needed."""
  generation, grid = parse_topology(name)
  require_libtpu()
  from jax.experimental import topologies

  chip = CHIPS[generation]
  grid3 = grid + (1,) * (3 - len(grid))
  options = {
    # A slice smaller than one host (2x2x1 chips) is described by its own bounds.
    "chips_per_host_bounds": tuple(min(g, h) for g, h in zip(grid3, (2, 2, 1))),
    # Without it libtpu describes a v4 as two devices per chip; jax on a v4 sees one.
    "chip_config_name": "megacore" if chip.megacore else "default",
  }
  topology = f"{generation}:{'x'.join(map(str, grid))}"
  # libtpu's lockfile keeps two runtimes off one host's chips; compiling touches no chip, and two
  # compiles (two test workers) must be able to load it side by side. Read when libtpu loads.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  try:
    description = topologies.get_topology_desc(topology, "tpu", **options)
  except jax.errors.JaxRuntimeError as e:
    raise UserError(f"unknown TPU topology {name!r} ({topology}): {_first_line(e)}") from None
  return TpuSlice(generation, grid, tuple(description.devices))


# --------------------------------------------------------------------------------- programs
@dataclasses.dataclass(frozen=True)
class Program:
  name: str
  chips: int
  trace: Callable[[], jax.stages.Traced]
  train_step: bool  # MFU applies: --step-time is the time of one such call


def _one_row_batch(config, stage_name: str) -> dict:
  """One row of the stage's synthetic training batch (the benchmark's), for its shapes."""
  from jaxtalk.bench.training import synthetic_batch
  from jaxtalk.stages import STAGES

  one_row = config.copy_and_resolve_references()
  one_row[f"{stage_name}_train"].batch_size = 1
  return synthetic_batch(STAGES[stage_name](one_row))


def train_step_program(config, stage_name: str, mesh: jax.sharding.Mesh) -> Program:
  """The stage's train step over `mesh`, with the stage's batch_size as the global batch."""
  import flax.linen as nn

  from jaxtalk.bench.training import batch_label
  from jaxtalk.parallel.sharding import BATCH_AXES, batch_sharding
  from jaxtalk.stages import STAGES
  from jaxtalk.training.optim import make_optimizer
  from jaxtalk.training.state import abstract_train_state
  from jaxtalk.training.step import make_train_step

  stage = STAGES[stage_name](config)
  batch_size = stage.settings.batch_size
  shards = math.prod(mesh.shape[axis] for axis in BATCH_AXES)
  if batch_size % shards:
    raise UserError(
      f"{stage_name}_train.batch_size {batch_size} does not divide over the {shards} batch "
      f"shards of the mesh (data x fsdp = {' x '.join(str(mesh.shape[a]) for a in BATCH_AXES)})"
    )
  settings, rules = stage.settings, tuple(config.axis_rules)

  def trace():
    optimizer = make_optimizer(settings, stage.is_frozen)
    # The models' own init: a pretrained audio encoder's weights replace values, not shapes, so
    # the state has the shapes training restores into without reading any checkpoint.
    init = lambda rng: stage.models.init(rng, stage.trains)
    state, state_shardings = abstract_train_state(
      init, optimizer, mesh, rules, jax.random.key(config.seed)
    )
    layout = batch_sharding(mesh)
    step = make_train_step(stage.loss, optimizer, state_shardings, layout, settings.ema_decay)
    batch = {
      key: jax.ShapeDtypeStruct((batch_size,) + row.shape[1:], row.dtype)
      for key, row in _one_row_batch(config, stage_name).items()
    }
    # As the training loop traces it: activations constrained by logical name need both.
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      return step.trace(state, batch)

  return Program(
    f"train step, {stage_name} (batch {batch_label(stage)})", mesh.size, trace, train_step=True
  )


def sampler_programs(config, device) -> list[Program]:
  """The streaming engine's programs (`jaxtalk.inference.stream`) on `device` alone: one audio
  block, one motion advance, one chunk of frames rendered. None depends on the audio's length."""
  from jax.sharding import SingleDeviceSharding

  from jaxtalk.inference.generate import SampleOptions, TalkingHead
  from jaxtalk.inference.stream import StreamLayout
  from jaxtalk.timebase import SAMPLES_PER_FRAME

  on_chip = SingleDeviceSharding(device)
  spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=on_chip)
  on_device = lambda tree: jax.tree.map(lambda x: spec(x.shape, x.dtype), tree)
  # No weights: TalkingHead passes them to its jitted programs as arguments, so abstract ones
  # lower the very programs a loaded bundle runs.
  model = TalkingHead(config, {})
  options = SampleOptions.from_config(config.sample)
  schedule, size = options.schedule, model.image_size
  layout = StreamLayout.of(model.models, schedule)
  params = on_device(model.models.abstract_params())
  portrait = spec((size, size, 3), jnp.uint8)
  rng = spec((), jax.eval_shape(jax.random.key, 0).dtype)
  features = spec((1, layout.feature_frames, config.audio.dim), jnp.float32)
  window = spec((1, layout.window_frames * SAMPLES_PER_FRAME), jnp.float32)
  # Through the class: `model.advance.trace` would be the unbound method's, without `model`.
  acting = spec((1, model.models.motion.acting_layout.width), jnp.float32)
  guidance = spec((2,), jnp.float32)
  state = on_device(
    jax.eval_shape(
      lambda *a: TalkingHead.start_motion(model, *a[:3], schedule, *a[3:]),
      params,
      portrait,
      rng,
      acting,
      guidance,
    )
  )
  latents = spec((layout.chunk, model.models.latent_dim), jnp.float32)
  noise = spec((size, size, 3), jnp.float32)
  steps = options.render_steps
  chunk = f"{layout.chunk} frames"
  return [
    Program(
      f"sample: audio block ({chunk} + context)",
      1,
      lambda: TalkingHead.push_features.trace(model, params, features, window),
      False,
    ),
    Program(
      f"sample: motion advance ({options.motion_steps} steps, {schedule.chunks_in_flight} chunks "
      f"of {chunk} in flight)",
      1,
      lambda: TalkingHead.advance.trace(model, params, state, features, schedule),
      False,
    ),
    Program(
      f"sample: render ({chunk} x {steps} steps)",
      1,
      lambda: TalkingHead.render.trace(model, params, portrait, latents, noise, steps),
      False,
    ),
  ]


# ---------------------------------------------------------------------------------- compiling
@contextlib.contextmanager
def attention_as_on_tpu(attention: str):
  """Traces models with the attention the pod would pick.

  `jaxtalk.kernels.attention` picks its implementation from `jax.default_backend()` when a model
  is traced. Here that is this machine's CPU, where it takes the jnp reference; "auto" makes it
  answer "tpu", as on the pod, so the programs hold the Pallas TPU kernels. "reference" leaves the
  CPU's answer. Nothing else that is traced asks (jax itself asks its backends directly).
  """
  if attention == "reference":
    yield
    return
  with mock.patch.object(jax, "default_backend", return_value="tpu"):
    yield


@dataclasses.dataclass(frozen=True)
class Result:
  program: str
  chips: int
  train_step: bool
  compile_seconds: float
  memory: dict[str, int] | None = None  # bytes per chip; see `_memory`
  flops_per_chip: float | None = None  # model FLOPs (`jaxtalk.bench.flops`) / chips
  flops_lower_bound: bool = False  # a while loop, of unknown trip count, counted once
  does_not_fit: bool = False  # the compiler ran out of HBM, or planned more than a chip has
  error: str | None = None  # the compiler's message, one line


def _first_line(error: Exception) -> str:
  lines = str(error).strip().splitlines()
  return f"{type(error).__name__}: {lines[0] if lines else ''}"


def _memory(stats) -> dict[str, int]:
  """Per-chip bytes. The state is donated, so outputs that reuse argument buffers (aliased)
  count once; the program's code sits in HBM too."""
  memory = {
    "arguments": stats.argument_size_in_bytes,
    "outputs": stats.output_size_in_bytes,
    "aliased": stats.alias_size_in_bytes,
    "temporaries": stats.temp_size_in_bytes,
    "code": stats.generated_code_size_in_bytes,
  }
  memory["total"] = (
    memory["arguments"]
    + memory["outputs"]
    - memory["aliased"]
    + memory["temporaries"]
    + memory["code"]
  )
  return memory


def compile_program(program: Program, attention: str = "auto") -> Result:
  """Lowers and compiles `program`; a failure becomes part of the result, not an exception."""
  start = time.perf_counter()
  common = dict(program=program.name, chips=program.chips, train_step=program.train_step)
  try:
    with attention_as_on_tpu(attention):
      traced = program.trace()
      lowered = traced.lower()
    compiled = lowered.compile()
  except UserError:
    raise
  except Exception as e:  # a compiler error is a finding about the program, reported with it
    # The TPU compiler reports an HBM overflow as RESOURCE_EXHAUSTED, with the sizes it needed.
    return Result(
      **common,
      compile_seconds=time.perf_counter() - start,
      does_not_fit="RESOURCE_EXHAUSTED" in str(e) and "HBM" in str(e).upper(),
      error=_first_line(e),
    )
  flops = model_flops(traced)
  return Result(
    **common,
    compile_seconds=time.perf_counter() - start,
    memory=_memory(compiled.memory_analysis()),
    flops_per_chip=flops.flops / program.chips,
    flops_lower_bound=flops.lower_bound,
  )


# ------------------------------------------------------------------------------------ report
# (header, key of `_memory`): the per-chip memory columns, GiB.
MEMORY_COLUMNS = (
  ("args", "arguments"),
  ("outputs", "outputs"),
  ("aliased", "aliased"),
  ("temps", "temporaries"),
  ("code", "code"),
  ("total", "total"),
)


def format_report(results: dict) -> str:
  chip = CHIPS[results["generation"]]
  hbm = chip.hbm_gib * GIB
  lines = [
    f"jaxtalk ahead-of-time compile: {results['config']} for {results['topology']} "
    f"({results['topology_name']}, {results['chips']} chips of {results['device_kind']}, "
    f"{chip.hbm_gib:g} GiB HBM and {chip.peak_bf16_tflops:g} bf16 TFLOP/s peak each); "
    f"jax {results['jax']}, libtpu {results['libtpu']}",
    f"mesh {results['mesh']}; each stage's batch_size is the global batch over the whole slice",
    f"attention: {results['attention_impl']}",
  ]
  mfu = bool(results["step_time"])
  memory_width = 9 * len(MEMORY_COLUMNS)
  header = f"{'program':<46}{'chips':>6}" + "".join(f"{name:>9}" for name, _ in MEMORY_COLUMNS)
  header += f"{'headroom':>10}{'GFLOP/chip':>13}{'TFLOP all':>11}{'MFU' if mfu else '':>8}"
  lines += ["", f"{'':<52}{' per chip, GiB ':-^{memory_width}}", header + f"{'compile s':>11}"]
  lower_bound = False
  for r in results["programs"]:
    row = f"{r['program']:<46}{r['chips']:>6}"
    if r["error"]:
      what = "DOES NOT FIT" if r["does_not_fit"] else "DOES NOT COMPILE"
      lines.append(f"{row}  {what} ({r['compile_seconds']:.0f} s): {r['error']}")
      continue
    memory, bound = r["memory"], ">=" if r["flops_lower_bound"] else ""
    lower_bound |= r["flops_lower_bound"]
    row += "".join(f"{memory[key] / GIB:>9.2f}" for _, key in MEMORY_COLUMNS)
    row += f"{100 * (hbm - memory['total']) / hbm:>9.1f}%"
    per_chip = f"{bound}{r['flops_per_chip'] / 1e9:,.1f}"
    all_chips = f"{bound}{r['flops_per_chip'] * r['chips'] / 1e12:,.2f}"
    utilisation = f"{bound}{100 * r['mfu']:.1f}%" if mfu and r["train_step"] else ""
    row += f"{per_chip:>13}{all_chips:>11}{utilisation:>8}"
    lines.append(row + f"{r['compile_seconds']:>11.0f}")
    if r["does_not_fit"]:
      lines.append(f"{'':<4}DOES NOT FIT: {memory['total'] / GIB:.2f} GiB > {chip.hbm_gib:g} GiB")
  lines.append("")
  lines.append(
    "total = args + outputs - aliased (the donated state reuses its buffers) + temps + code; "
    "headroom = HBM - total"
  )
  if lower_bound:
    lines.append(
      ">=: a lower bound; a while loop's body (its trip count is not static) is counted once"
    )
  if results["step_time"]:
    lines.append(
      f"MFU: FLOPs per chip / (step time {results['step_time']:g} s x "
      f"{chip.peak_bf16_tflops:g} TFLOP/s bf16 peak per chip)"
    )
  return "\n".join(lines)


# --------------------------------------------------------------------------------------- CLI
def parse_args(argv=None):
  p = argument_parser("python -m jaxtalk.bench.compile", __doc__)
  p.add_argument("--config", required=True, help="config file, e.g. configs/pod512.py")
  p.add_argument("--topology", required=True, help=TOPOLOGY_HELP)
  p.add_argument("--stage", choices=STAGE_CHOICES, default="all", help="what to compile")
  p.add_argument(
    "--step-time",
    type=float,
    help="seconds of one train step: reports the model FLOPs utilisation that would mean",
  )
  p.add_argument(
    "--attention",
    choices=("auto", "reference"),
    default="auto",
    help="auto: the Pallas TPU kernels jaxtalk picks on TPU; reference: the jnp attention",
  )
  p.add_argument("--json", help="also write the results to this JSON file")
  return p.parse_args(argv)


def _programs(config, args, tpu: TpuSlice) -> tuple[list[Program], dict]:
  """The programs --stage asks for, and what the report says about the mesh."""
  stages = ("renderer", "motion") if args.stage == "all" else (args.stage,)
  from jaxtalk.parallel.mesh import make_mesh

  programs, about_mesh = [], {"mesh": "none (the sampler runs on one chip)"}
  if "sample" not in stages:
    mesh = make_mesh(config.mesh, devices=tpu.devices)  # as training builds it
    programs = [train_step_program(config, stage, mesh) for stage in stages]
    about_mesh = {"mesh": " ".join(f"{axis}={size}" for axis, size in mesh.shape.items())}
  if args.stage in ("sample", "all"):
    programs += sampler_programs(config, tpu.devices[0])
  return programs, about_mesh


def run(args) -> dict:
  from importlib.metadata import version
  from pathlib import Path

  from jaxtalk.bench.model import load_config_file

  if args.step_time is not None and args.step_time <= 0:
    raise UserError("--step-time must be positive")
  tpu = tpu_slice(args.topology)
  config = load_config_file(Path(args.config))
  programs, mesh = _programs(config, args, tpu)
  results = {
    "config": args.config,
    "topology": args.topology,
    "topology_name": tpu.topology_name,
    "generation": tpu.generation,
    "chips": len(tpu.devices),
    "device_kind": tpu.devices[0].device_kind,
    "hbm_bytes_per_chip": tpu.chip.hbm_gib * GIB,
    "jax": jax.__version__,
    "libtpu": version("libtpu"),
    "attention_impl": (
      "Pallas TPU kernels (what jaxtalk picks on TPU)"
      if args.attention == "auto"
      else "jnp reference (--attention reference)"
    ),
    "step_time": args.step_time,
    **mesh,
    "programs": [],
  }
  peak = tpu.chip.peak_bf16_tflops * 1e12
  for program in programs:
    print(f"compiling {program.name} ...", file=sys.stderr, flush=True)
    result = dataclasses.asdict(compile_program(program, args.attention))
    if result["memory"]:
      result["does_not_fit"] = result["memory"]["total"] > results["hbm_bytes_per_chip"]
      if args.step_time:
        result["mfu"] = result["flops_per_chip"] / (args.step_time * peak)
    results["programs"].append(result)
  print_report(format_report(results), results, args.json)
  return results


def main(argv=None) -> int:
  # Nothing here runs on a device: on a TPU host, leave its chips to whoever is using them.
  jax.config.update("jax_platforms", "cpu")
  return run_command(run, parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
