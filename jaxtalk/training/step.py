"""The train step: a pure function of (state, batch), jitted once with explicit shardings.

Explicit in/out shardings pin the layout chosen in `jaxtalk.parallel` (XLA inserts the
collectives), and donating the state lets XLA update parameters and optimizer moments in place,
so peak memory holds one copy of the state, not two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax
from jax.sharding import NamedSharding

from jaxtalk.parallel.sharding import replicated
from jaxtalk.training.optim import current_learning_rate, ema_update
from jaxtalk.training.state import TrainState

# (params, batch, rng) -> (scalar loss, dict of scalar metrics). Written per training stage.
LossFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def make_train_step(
  loss_fn: LossFn,
  optimizer: optax.GradientTransformation,
  state_shardings: TrainState,
  batch_sharding: NamedSharding,
  ema_decay: float,
) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
  """Returns `train_step(state, batch) -> (new_state, metrics)`, compiled on first call.

  metrics holds the loss function's metrics plus "loss", "grad_norm" (before clipping) and
  "learning_rate" (the one this update used), as replicated scalars. The input state is donated:
  do not use it after the call.
  """

  def train_step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
    step_rng, next_rng = jax.random.split(state.rng)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, metrics), grads = grad_fn(state.params, batch, step_rng)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = TrainState(
      step=state.step + 1,
      params=params,
      ema_params=ema_update(state.ema_params, params, ema_decay),
      opt_state=opt_state,
      rng=next_rng,
    )
    metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}
    learning_rate = current_learning_rate(opt_state)
    if learning_rate is not None:
      metrics["learning_rate"] = learning_rate
    return new_state, metrics

  return jax.jit(
    train_step,
    in_shardings=(state_shardings, batch_sharding),
    out_shardings=(state_shardings, replicated(batch_sharding.mesh)),
    donate_argnums=0,
  )
