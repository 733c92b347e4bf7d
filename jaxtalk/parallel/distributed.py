"""Joining a run of several processes (hosts), and what the processes exchange outside the step.

A multi-host run starts the same command on every host; `join_run` connects each process to the
others through `jax.distributed` before anything touches a device. It finds the processes itself
where a launcher says who they are: a Cloud TPU VM (the TPU metadata), SLURM (`srun`), Open MPI
(`mpirun`), or jax's own `JAX_COORDINATOR_ADDRESS`; anywhere else the coordinator's address, the
number of processes and this process's id are given explicitly. On CPU the processes reduce over
gloo, which is how the tests run two "hosts" on one machine.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import json
import os
from typing import Any

import jax
import numpy as np

from jaxtalk.errors import UserError


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
  """Explicit membership of a run: all three fields, or none (then the launcher is asked)."""

  coordinator_address: str | None = None  # host:port of process 0, reachable from every host
  num_processes: int | None = None
  process_id: int | None = None

  @property
  def explicit(self) -> bool:
    given = [v is not None for v in dataclasses.astuple(self)]
    if any(given) and not all(given):
      raise UserError(
        "give --coordinator_address, --num_processes and --process_id together, or none of "
        "them (then the cluster's launcher says who the processes are)"
      )
    return all(given)


def detected_launcher() -> str | None:
  """The multi-process launcher whose environment this process runs in, or None.

  Only environments that jax.distributed can read its membership from count; each check is cheap
  and never touches the network.
  """
  env = os.environ
  if env.get("JAX_COORDINATOR_ADDRESS"):
    return "JAX_COORDINATOR_ADDRESS"
  if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
    return "SLURM"
  if int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
    return "Open MPI"
  # A Cloud TPU VM, of one host or of a pod: the TPU metadata says which. On one host joining a
  # run of one process costs a moment and changes nothing.
  if importlib.util.find_spec("libtpu") and glob.glob("/dev/accel*") + glob.glob(
    "/dev/vfio/[0-9]*"
  ):
    return "Cloud TPU"
  return None


def join_run(spec: ProcessSpec, mode: str = "auto") -> None:
  """Connects this process to the others of its run; a single-process run does nothing.

  mode "auto" joins when `spec` is explicit or a launcher is detected, "on" always asks jax to
  detect the cluster, "off" never joins. Must run before the first use of any device.
  """
  if mode not in ("auto", "on", "off"):
    raise UserError(f"--distributed is {mode!r}; use auto, on or off")
  explicit = spec.explicit
  if mode == "off" or (mode == "auto" and not explicit and detected_launcher() is None):
    return
  # Cross-process collectives of the CPU backend; accelerators have their own.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    if explicit:
      jax.distributed.initialize(spec.coordinator_address, spec.num_processes, spec.process_id)
    else:
      jax.distributed.initialize()
  except Exception as e:  # jax reports an unreachable coordinator, a bad id, ... in many types
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
    where = f" at {spec.coordinator_address}" if explicit else ""
    raise UserError(f"cannot join the multi-process run{where}: {lines[0][:300]}") from None


def gather_from_processes(value: Any) -> list[Any]:
  """Every process's JSON-serialisable `value`, in process order, on every process."""
  if jax.process_count() == 1:
    return [value]
  from jax.experimental import multihost_utils

  data = np.frombuffer(json.dumps(value).encode(), np.uint8)
  lengths = multihost_utils.process_allgather(np.int32(len(data)))
  padded = np.zeros(int(lengths.max()), np.uint8)
  padded[: len(data)] = data
  rows = multihost_utils.process_allgather(padded)
  return [json.loads(bytes(row[:n])) for row, n in zip(rows, lengths)]


def wait_for_all(name: str) -> None:
  """Returns on every process once all have reached the barrier `name`."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)
