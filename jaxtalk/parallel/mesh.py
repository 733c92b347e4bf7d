"""The named device mesh every jitted step runs on: axes ("data", "fsdp", "tensor").

- data:   pure data parallelism; parameters replicated, batch split.
- fsdp:   batch split *and* parameters sharded (ZeRO-3 style), gathered on use by XLA.
- tensor: parameters split along their "mlp"/"heads" dimensions (Megatron style).

The same code runs on one CPU (a 1x1x1 mesh) and on a pod; only the sizes change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
from jax.experimental import mesh_utils

from jaxtalk.errors import UserError

MESH_AXES = ("data", "fsdp", "tensor")


def make_mesh(
  axis_sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None
) -> jax.sharding.Mesh:
  """Builds the ("data", "fsdp", "tensor") mesh over `devices` (default: all devices).

  Args:
    axis_sizes: size per axis name, e.g. {"data": -1, "fsdp": 1, "tensor": 1} (a ConfigDict works
      too). Missing axes have size 1; at most one axis may be -1, meaning "all remaining devices".
    devices: the devices to lay out; tests pass a subset to compare against a single device.
  """
  devices = list(jax.devices() if devices is None else devices)
  sizes = dict(axis_sizes.items())
  unknown = sorted(set(sizes) - set(MESH_AXES))
  if unknown:
    raise UserError(f"unknown mesh axis {unknown}; the mesh axes are {list(MESH_AXES)}")
  shape = [int(sizes.get(name, 1)) for name in MESH_AXES]
  if shape.count(-1) > 1:
    raise UserError(f"mesh {sizes} has more than one axis of size -1; give all but one a size")
  if any(size == 0 or size < -1 for size in shape):
    raise UserError(f"mesh {sizes} has an axis size below 1; use positive sizes or -1")

  fixed = math.prod(size for size in shape if size != -1)
  if -1 in shape and len(devices) % fixed:
    raise UserError(
      f"mesh {sizes} needs a multiple of {fixed} devices but {len(devices)} are "
      f"available; change the mesh sizes in the config"
    )
  shape = [len(devices) // fixed if size == -1 else size for size in shape]
  if math.prod(shape) != len(devices):
    raise UserError(
      f"mesh {dict(zip(MESH_AXES, shape))} uses {math.prod(shape)} devices but "
      f"{len(devices)} are available; set one axis to -1 or match the device count"
    )

  # Auto axes: shardings come from explicit in/out_shardings and XLA propagates the rest. jax
  # 0.10 defaults to Explicit axes, which would make every op's sharding part of its type.
  axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  try:
    # make_mesh orders the devices for the physical topology (ICI rings on TPU, NVLink on GPU).
    return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types, devices=devices)
  except NotImplementedError:
    # It gives each mesh axis whole axes of the chip torus, and a v5p-256 (4x4x8) has none for
    # pod512's tensor=2: then a torus axis is split, its halves still ICI neighbours.
    grid = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
    return jax.sharding.Mesh(grid, MESH_AXES, axis_types=axis_types)
