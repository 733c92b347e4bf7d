"""The train state and its sharded creation.

Parameters are first created abstractly (`jax.eval_shape`: shapes and logical axis names, no
memory), their shardings derived from the names, and only then materialised by a jitted init
whose outputs already have those shardings: no parameter ever sits whole on one device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxtalk.parallel.sharding import Rules, param_shardings, strip_partitioning

# rng -> parameter pytree, as returned by `model.init(rng, ...)["params"]`; leaves may carry
# logical axis names (`nn.with_logical_partitioning`).
InitFn = Callable[[jax.Array], Any]


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: number of optimizer updates applied so far
  params: Any  # plain arrays (partitioning boxes stripped), what the loss function sees
  ema_params: Any  # exponential moving average of params; used for sampling
  opt_state: optax.OptState
  rng: jax.Array  # typed PRNG key, split once per step


def _boxed_state_fn(init_fn: InitFn, optimizer: optax.GradientTransformation):
  """rng -> TrainState whose params and optimizer moments still carry their axis names."""

  def init_state(rng):
    init_rng, train_rng = jax.random.split(rng)
    params = init_fn(init_rng)
    # optax maps over the boxed leaves, so Adam's moments inherit the parameters' axis names
    # and are sharded exactly like them.
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      ema_params=params,
      opt_state=optimizer.init(params),
      rng=train_rng,
    )

  return init_state


def abstract_train_state(
  init_fn: InitFn,
  optimizer: optax.GradientTransformation,
  mesh: jax.sharding.Mesh,
  rules: Rules,
  rng: jax.Array,
) -> tuple[TrainState, TrainState]:
  """(abstract state of ShapeDtypeStructs, NamedSharding per leaf), computing nothing.

  Resuming from a checkpoint needs only these, so a resumed run never pays for a fresh init.
  """
  boxed = jax.eval_shape(_boxed_state_fn(init_fn, optimizer), rng)
  return strip_partitioning(boxed), param_shardings(boxed, mesh, rules)


def init_train_state(
  init_fn: InitFn,
  optimizer: optax.GradientTransformation,
  state_shardings: TrainState,
  rng: jax.Array,
) -> TrainState:
  """Materialises a fresh state (step 0, EMA = params) directly in `state_shardings`."""
  boxed_init = _boxed_state_fn(init_fn, optimizer)
  return jax.jit(lambda r: strip_partitioning(boxed_init(r)), out_shardings=state_shardings)(rng)
