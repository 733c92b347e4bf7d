"""From logical axis names to device shardings.

Model code annotates each parameter with logical names through
`flax.linen.with_logical_partitioning(init, ("embed", "mlp"))` and never mentions a device. A rule
table in the config maps each logical name to mesh axes, e.g.

    (("activation_batch", ("data", "fsdp")), ("embed", "fsdp"), ("mlp", "tensor"), ("kv", None))

(activations and weights have names of their own, see `jaxtalk.config`), so changing how a model is split across devices is a config edit, not a code change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxtalk.errors import UserError

# One rule: logical name -> a mesh axis, a sequence of mesh axes, or None (replicated). JSON
# round trips (configs saved in checkpoints) turn the tuples into lists; both are accepted.
Rules = Sequence[tuple[str, str | Sequence[str] | None]]

BATCH_AXES = ("data", "fsdp")


def _rule_table(rules: Rules) -> dict[str, tuple[str, ...]]:
  """Logical name -> tuple of mesh axes; the first rule for a name wins, as in flax."""
  table = {}
  for logical_name, mesh_axes in rules:
    if mesh_axes is None:
      mesh_axes = ()
    elif isinstance(mesh_axes, str):
      mesh_axes = (mesh_axes,)
    table.setdefault(logical_name, tuple(mesh_axes))
  return table


def spec_for_dims(
  mesh_axes_per_dim: Sequence[Sequence[str]], shape: Sequence[int], mesh: Mesh
) -> PartitionSpec:
  """The PartitionSpec that splits each dim over its mesh axes, wherever that is possible.

  A dim keeps the longest prefix of its axes whose total size divides it, so a tiny test model
  still runs on 8 devices (replicated where it cannot be split). A mesh axis can split only one
  dim of an array, so an axis already used by an earlier dim is skipped.
  """
  used = set()
  spec = []
  for dim_size, axes in zip(shape, mesh_axes_per_dim):
    axes = [axis for axis in axes if axis not in used]
    while axes and dim_size % math.prod(mesh.shape[axis] for axis in axes):
      axes.pop()
    used.update(axes)
    spec.append(None if not axes else axes[0] if len(axes) == 1 else tuple(axes))
  return PartitionSpec(*spec)


def param_shardings(abstract_tree: Any, mesh: Mesh, rules: Rules) -> Any:
  """NamedSharding for every leaf of a (boxed, usually abstract) pytree.

  Leaves boxed by `with_logical_partitioning` are split as `rules` say; logical names without a
  rule are replicated. Boxes from `with_partitioning` already name mesh axes. Unboxed leaves
  (optimizer step counters, RNG keys, parameters of modules without annotations) are replicated.
  The result has the structure of `strip_partitioning(abstract_tree)`.
  """
  table = _rule_table(rules)

  def sharding_of(leaf):
    if not isinstance(leaf, nn.Partitioned):
      return NamedSharding(mesh, PartitionSpec())
    if not hasattr(leaf.value, "shape"):
      return leaf.value  # an empty node (optax's state of a frozen parameter): nothing to shard
    if isinstance(leaf, nn.LogicallyPartitioned):
      per_dim = [table.get(name, ()) if name is not None else () for name in leaf.names]
    else:
      per_dim = [
        () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        for axes in leaf.names
      ]
    return NamedSharding(mesh, spec_for_dims(per_dim, leaf.value.shape, mesh))

  return jax.tree.map(sharding_of, abstract_tree, is_leaf=lambda x: isinstance(x, nn.Partitioned))


def strip_partitioning(tree: Any) -> Any:
  """The tree with every partitioning box replaced by its value.

  Unlike `flax.linen.meta.unbox`, this never adds a sharding constraint (flax adds one whenever a
  global mesh is set, which fails on abstract values and would bypass the divisibility fallback
  above); shardings come from `param_shardings` instead.
  """
  return jax.tree.map(
    lambda x: x.value if isinstance(x, nn.Partitioned) else x,
    tree,
    is_leaf=lambda x: isinstance(x, nn.Partitioned),
  )


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batches are split along their leading dim over ("data", "fsdp"); other dims replicated."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole value (scalars, metrics, RNG keys)."""
  return NamedSharding(mesh, PartitionSpec())


def global_batch(local_batch: Any, sharding: NamedSharding) -> Any:
  """Turns this host's numpy batch (a pytree) into global jax.Arrays laid out by `sharding`.

  Each host loads only its own rows (grain shards the data per process); the global batch is
  the concatenation over hosts in process order, `process_count` times the local batch.
  """
  shards = math.prod(sharding.mesh.shape[axis] for axis in BATCH_AXES)

  def to_global(x):
    x = np.asarray(x)
    global_rows = x.shape[0] * jax.process_count()
    if global_rows % shards:
      raise UserError(
        f"global batch size {global_rows} is not divisible by the {shards} batch "
        f"shards of the mesh (data x fsdp); change batch_size or the mesh sizes"
      )
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree.map(to_global, local_batch)
