"""Model FLOPs of a traced program: the matmuls and convolutions its jaxpr asks for.

XLA's own count (`compiled.cost_analysis()["flops"]`) takes a loop body once and a Pallas kernel
as nothing, so for a model whose layers run as one `nn.scan` and whose attention is a kernel it
reports a fraction of the work. MFU is conventionally model FLOPs over peak, so this counts them
from the jaxpr instead, before any compiler sees it:

- `dot_general`: 2 x the product of the output's dimensions x the contracted size;
- `conv_general_dilated`: 2 x the output's elements x each output's taps (kernel window x input
  features per group), zeros of a dilation included, as for a dense layer;
- a `scan`: its body times its length; `cond`: its most expensive branch;
- a `pallas_call`: the FLOPs of its cost estimate, which jaxtalk's attention kernels give
  (`jaxtalk.kernels.flash.cost_estimate`: the blocks their lists visit, as a mask cuts them); a
  body's count times the grid would add up branches of which one runs. A kernel without an estimate
  counts nothing and marks the count as a lower bound;
- a `shard_map`: its body, on one shard's shapes, times the number of shards of its manual axes;
- every other sub-program (jit, remat, custom derivatives) once, as it runs.

Elementwise work is not counted (it is small next to the matmuls and memory-bound on a TPU). A
`while_loop` has no static trip count; its body is counted once and the count is marked as a lower
bound (jaxtalk's programs have none: `fori_loop`s of static length are scans).
"""

from __future__ import annotations

import dataclasses
import math

from jax.extend import core


@dataclasses.dataclass(frozen=True)
class FlopCount:
  flops: float
  lower_bound: bool  # a while loop's body counted once, or a kernel without a cost estimate

  def __add__(self, other: FlopCount) -> FlopCount:
    return FlopCount(self.flops + other.flops, self.lower_bound or other.lower_bound)

  def __mul__(self, times: float) -> FlopCount:
    return FlopCount(self.flops * times, self.lower_bound)


NONE = FlopCount(0.0, False)


def _dot_general_flops(eqn) -> float:
  (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
  lhs = eqn.invars[0].aval.shape
  out = eqn.outvars[0].aval.shape
  return 2.0 * math.prod(out) * math.prod(lhs[d] for d in lhs_contracting)


def _conv_flops(eqn) -> float:
  rhs = eqn.invars[1].aval.shape
  out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
  taps = math.prod(rhs) // out_features  # kernel window x input features of one group
  return 2.0 * math.prod(eqn.outvars[0].aval.shape) * taps


def _sub_jaxprs(eqn) -> list[core.Jaxpr]:
  found = []
  for value in eqn.params.values():
    for item in value if isinstance(value, tuple | list) else (value,):
      if isinstance(item, core.ClosedJaxpr):
        found.append(item.jaxpr)
      elif isinstance(item, core.Jaxpr):
        found.append(item)
  return found


def _eqn_count(eqn) -> FlopCount:
  name = eqn.primitive.name
  if name == "dot_general":
    return FlopCount(_dot_general_flops(eqn), False)
  if name == "conv_general_dilated":
    return FlopCount(_conv_flops(eqn), False)
  if name == "scan":
    return count_jaxpr(eqn.params["jaxpr"].jaxpr) * eqn.params["length"]
  if name == "cond":
    branches = [count_jaxpr(branch.jaxpr) for branch in eqn.params["branches"]]
    return max(branches, key=lambda c: c.flops)
  if name == "while":
    once = count_jaxpr(eqn.params["body_jaxpr"].jaxpr) + count_jaxpr(eqn.params["cond_jaxpr"].jaxpr)
    return FlopCount(once.flops, True)
  if name == "pallas_call":
    estimate = eqn.params["cost_estimate"]
    return FlopCount(float(estimate.flops), False) if estimate else FlopCount(0.0, True)
  if name == "shard_map":
    # jax 0.10 names the axes the map makes manual "newly_manual_axes"; older ones "manual_axes".
    axes = eqn.params.get("newly_manual_axes", eqn.params.get("manual_axes"))
    shards = math.prod(eqn.params["mesh"].shape[axis] for axis in axes)
    return count_jaxpr(eqn.params["jaxpr"]) * shards
  total = NONE
  for jaxpr in _sub_jaxprs(eqn):
    total += count_jaxpr(jaxpr)
  return total


def count_jaxpr(jaxpr: core.Jaxpr) -> FlopCount:
  total = NONE
  for eqn in jaxpr.eqns:
    total += _eqn_count(eqn)
  return total


def model_flops(traced) -> FlopCount:
  """The model FLOPs of one call of a traced program (`jax.jit(f).trace(...)`), over all devices."""
  return count_jaxpr(traced.jaxpr.jaxpr)
