"""Attention benchmark: TFLOP/s of every implementation, per mask kind, length, head dim and pass.

    python -m jaxtalk.bench.attention [--lengths 1024 4096] [--head-dims 128] [--out results.json]

Throughput counts only the work the mask leaves visible, so a kernel that skips hidden blocks is
not credited for them and one that computes them anyway is not either: forward FLOPs are
4 * visible (query, key) pairs * head_dim per head (two matmuls), backward 2.5 times that (the
usual flash-attention convention: five matmuls, one of them recomputing the scores). Backward time
is a forward-and-backward call minus a forward call.

Implementations compared in one run: the jnp reference under XLA, cuDNN through
`jax.nn.dot_product_attention` (native mask where it has one, else the dense boolean mask a user
would pass), the Pallas kernel of the backend, and `tokamax` when installed. A case that fails
(out of memory, unsupported) is recorded with its error and the run goes on.

On CPU the Pallas kernels run in interpret mode: that run checks the script, not kernel speed, and
defaults to one short length. Results go to `benchmarks/attention/` with device, jax version, date.
"""

from __future__ import annotations

import functools
import os
import sys

import jax
import jax.numpy as jnp

from jaxtalk.bench.machine import describe_machine
from jaxtalk.bench.timing import measure
from jaxtalk.cli import argument_parser, run_command
from jaxtalk.kernels import attention
from jaxtalk.kernels.cudnn import cudnn_attention
from jaxtalk.kernels.masks import BlockCausalMask, FullMask, LocalAudioMask, Mask
from jaxtalk.media import write_json

ACCELERATOR_LENGTHS = (1024, 2048, 4096, 8192, 16384)
CPU_LENGTHS = (256,)
FEATURES = 2048  # heads * head_dim, as in a mid-size transformer layer


def make_mask(kind: str, args) -> Mask:
  if kind == "full":
    return FullMask()
  if kind == "block_causal":
    return BlockCausalMask(args.chunk)
  return LocalAudioMask(args.audio_radius)


def visible_pairs(mask: Mask, q_len: int, k_len: int) -> int:
  """How many (query, key) pairs the mask shows, from its key ranges (no dense matrix)."""
  ranges = mask.intervals(q_len, k_len)
  return int(jnp.sum(ranges[..., 1] - ranges[..., 0]) + jnp.sum(ranges[..., 3] - ranges[..., 2]))


def implementations(mask: Mask) -> dict:
  """name -> attend(q, k, v) for everything this machine can run on `mask`."""
  backend = jax.default_backend()
  impls = {"reference_xla": functools.partial(attention, mask=mask, impl="reference")}
  # Off their hardware (CPU) both kernels run, interpreted, so the script is checked for both.
  for kernel in {"gpu": ["pallas_gpu"], "tpu": ["pallas_tpu"]}.get(
    backend, ["pallas_gpu", "pallas_tpu"]
  ):
    impls[kernel] = functools.partial(attention, mask=mask, impl=kernel)
  if backend == "gpu":
    impls["cudnn"] = functools.partial(cudnn_attention, mask=mask, dense_mask=True)
  tokamax = _tokamax()
  if tokamax is not None:
    impls["tokamax"] = functools.partial(_tokamax_attention, tokamax, mask)
  return impls


def _tokamax():
  try:
    import tokamax  # optional: only benchmarked when installed
  except ImportError:
    return None
  return tokamax


def _tokamax_attention(tokamax, mask, q, k, v):
  # Same signature as jax.nn.dot_product_attention; masks it has no native form for go dense.
  if isinstance(mask, FullMask):
    return tokamax.dot_product_attention(q, k, v)
  return tokamax.dot_product_attention(q, k, v, mask=mask.dense(q.shape[1], k.shape[1]))


def time_case(attend, q, k, v, dout) -> tuple[float, float]:
  """(forward seconds, backward seconds) of warm calls."""
  forward = jax.jit(attend)
  step = jax.jit(lambda q, k, v: jax.vjp(attend, q, k, v)[1](dout))
  fwd, _ = measure(lambda: forward(q, k, v))
  both, _ = measure(lambda: step(q, k, v))
  return fwd.seconds, max(both.seconds - fwd.seconds, 1e-9)


def run(args) -> dict:
  results = {
    "machine": describe_machine(),
    "dtype": args.dtype,
    "batch": args.batch,
    "chunk": args.chunk,
    "audio_radius": args.audio_radius,
    "rows": [],
  }
  if jax.default_backend() == "cpu":
    results["note"] = (
      "CPU run: Pallas kernels in interpret mode. This checks the benchmark "
      "script; the numbers say nothing about kernel speed."
    )
  dtype = jnp.dtype(args.dtype)
  for kind in args.masks:
    for length in args.lengths:
      mask = make_mask(kind, args)
      for head_dim in args.head_dims:
        heads = max(FEATURES // head_dim, 1) if args.heads is None else args.heads
        keys = jax.random.split(jax.random.key(0), 4)
        shape = (args.batch, length, heads, head_dim)
        q, k, v, dout = (jax.random.normal(key, shape, dtype) for key in keys)
        flops = 4 * visible_pairs(mask, length, length) * head_dim * heads * args.batch
        for name, attend in implementations(mask).items():
          row = {"mask": kind, "length": length, "head_dim": head_dim, "heads": heads, "impl": name}
          try:
            fwd, bwd = time_case(attend, q, k, v, dout)
            row.update(
              fwd_ms=fwd * 1e3,
              bwd_ms=bwd * 1e3,
              fwd_tflops=flops / fwd / 1e12,
              bwd_tflops=2.5 * flops / bwd / 1e12,
            )
          except Exception as error:  # noqa: BLE001  (one failing case must not end the run)
            row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
          results["rows"].append(row)
          print(format_row(row), flush=True)
  return results


def format_row(row: dict) -> str:
  head = f"{row['mask']:>13} T={row['length']:>6} d={row['head_dim']:>3} {row['impl']:>14}"
  if "error" in row:
    return f"{head}  failed: {row['error']}"
  return (
    f"{head}  fwd {row['fwd_tflops']:8.3f} TFLOP/s ({row['fwd_ms']:9.3f} ms)"
    f"  bwd {row['bwd_tflops']:8.3f} TFLOP/s ({row['bwd_ms']:9.3f} ms)"
  )


def default_output(machine: dict) -> str:
  device = machine["device"].split(" x ", 1)[-1].replace(" ", "-").lower()
  return os.path.join("benchmarks", "attention", f"{machine['backend']}-{device}.json")


def parse_args(argv=None):
  parser = argument_parser("python -m jaxtalk.bench.attention", __doc__)
  parser.add_argument(
    "--masks",
    nargs="+",
    default=["full", "block_causal", "local_audio"],
    choices=["full", "block_causal", "local_audio"],
  )
  parser.add_argument(
    "--lengths",
    nargs="+",
    type=int,
    default=None,
    help=f"default {ACCELERATOR_LENGTHS} on GPU/TPU, {CPU_LENGTHS} on CPU",
  )
  parser.add_argument("--head-dims", nargs="+", type=int, default=[64, 128])
  parser.add_argument("--heads", type=int, default=None, help=f"default {FEATURES} / head dim")
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
  parser.add_argument("--chunk", type=int, default=128, help="block-causal chunk size")
  parser.add_argument(
    "--audio-radius",
    type=int,
    default=31,
    help="local audio mask radius r (T / (2r + 1) >= 32 from T = 2k on)",
  )
  parser.add_argument("--out", default=None, help="results JSON (default benchmarks/attention/...)")
  args = parser.parse_args(argv)
  if args.lengths is None:
    args.lengths = CPU_LENGTHS if jax.default_backend() == "cpu" else ACCELERATOR_LENGTHS
  return args


def main(argv=None) -> int:
  return run_command(_run_and_write, parse_args(argv))


def _run_and_write(args) -> None:
  results = run(args)
  out = args.out or default_output(results["machine"])
  os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
  write_json(out, results)
  print(f"wrote {out}")


if __name__ == "__main__":
  sys.exit(main())
