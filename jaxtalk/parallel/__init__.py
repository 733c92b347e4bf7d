"""Device mesh and shardings: how arrays are laid out over devices, from one CPU to a pod."""

from jaxtalk.parallel.mesh import MESH_AXES, make_mesh
from jaxtalk.parallel.sharding import (
  BATCH_AXES,
  Rules,
  batch_sharding,
  global_batch,
  param_shardings,
  replicated,
  strip_partitioning,
)

__all__ = [
  "MESH_AXES",
  "BATCH_AXES",
  "Rules",
  "make_mesh",
  "param_shardings",
  "batch_sharding",
  "replicated",
  "global_batch",
  "strip_partitioning",
]
