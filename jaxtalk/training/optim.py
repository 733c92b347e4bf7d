"""The optimizer of both training stages: clipped AdamW with warmup and cosine decay; and EMA."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from jaxtalk.training.settings import TrainSettings


def learning_rate_schedule(settings: TrainSettings) -> optax.Schedule:
  """Linear warmup from 0 to `learning_rate`, then cosine decay to `end_learning_rate_factor`
  times it at `num_steps`. A run shorter than its warmup (a quick demo) just stays in warmup."""
  decay_steps = max(settings.num_steps, settings.warmup_steps + 1)
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=settings.learning_rate,
    warmup_steps=settings.warmup_steps,
    decay_steps=decay_steps,
    end_value=settings.learning_rate * settings.end_learning_rate_factor,
  )


def _decay_mask(params):
  # Biases and norm scales/offsets (ndim <= 1) are not decayed: shrinking them toward zero only
  # fights the normalisation, it does not regularise the function.
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(
  settings: TrainSettings, frozen: Callable[[tuple[str, ...]], bool]
) -> optax.GradientTransformation:
  """AdamW with global-norm clipping and a warmup-cosine schedule.

  Args:
    settings: learning rate, its schedule, weight decay, Adam betas and gradient clipping.
    frozen: predicate on a parameter's path (its dict keys); those parameters are never updated
      (not even by weight decay) and get no optimizer state, so a frozen pretrained encoder costs
      no Adam moments. The state has the same structure whether or not anything is frozen.

  Only the learning rate lives in the optimizer state (`inject_hyperparams`), so the train step
  can report the rate it actually used; the other hyperparameters stay constants of the code and
  always come from the config, also when a run resumes from a checkpoint.
  """
  adamw = optax.inject_hyperparams(
    lambda learning_rate: optax.adamw(
      learning_rate,
      b1=settings.adam_b1,
      b2=settings.adam_b2,
      weight_decay=settings.weight_decay,
      mask=_decay_mask,
    )
  )(learning_rate=learning_rate_schedule(settings))
  optimizer = optax.chain(optax.clip_by_global_norm(settings.grad_clip), adamw)
  return optax.multi_transform(
    {"train": optimizer, "frozen": optax.set_to_zero()}, lambda params: _labels(params, frozen)
  )


def _labels(params, frozen):
  def label(path, _):
    keys = tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))
    return "frozen" if frozen(keys) else "train"

  return jax.tree_util.tree_map_with_path(label, params)


def current_learning_rate(opt_state: optax.OptState) -> jax.Array | None:
  """The learning rate of the last update, or None for an optimizer without injected hyperparams."""
  # hyperparams_states also has a "learning_rate" entry (the schedule's step counter): keep arrays.
  return optax.tree_utils.tree_get(
    opt_state, "learning_rate", filtering=lambda _, value: isinstance(value, jax.Array)
  )


def ema_update(ema_params: Any, params: Any, decay: float) -> Any:
  """Exponential moving average of the weights; sampling uses it (smoother than the raw weights)."""
  return jax.tree.map(lambda e, p: e + (1.0 - decay) * (p.astype(e.dtype) - e), ema_params, params)
