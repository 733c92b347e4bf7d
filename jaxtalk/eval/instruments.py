"""What the evaluation's two trained instruments (the reader and the sync network) share: how
their weights are saved, read back and checked, and the optimizer they are trained with."""

from __future__ import annotations

from pathlib import Path

import flax.serialization
import flax.traverse_util
import jax
import numpy as np
import optax

from jaxtalk.errors import UserError
from jaxtalk.media import write_bytes, write_json

# Both instruments are small conv nets trained from scratch for a few thousand steps.
LEARNING_RATE, WARMUP_STEPS, WEIGHT_DECAY = 1e-3, 200, 1e-4


def instrument_optimizer(steps: int) -> optax.GradientTransformation:
  """Clipped AdamW, warmed up over a tenth of the run (at most WARMUP_STEPS), cosine-decayed."""
  schedule = optax.warmup_cosine_decay_schedule(
    0.0, LEARNING_RATE, min(WARMUP_STEPS, steps // 10), steps
  )
  return optax.chain(
    optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=WEIGHT_DECAY)
  )


def save_instrument(folder, weights_file: str, meta_file: str, weights, meta: dict) -> Path:
  """Writes the weights (flax msgpack) and the metadata (JSON) into `folder`, each atomically."""
  folder = Path(folder)
  write_bytes(folder / weights_file, flax.serialization.msgpack_serialize(jax.device_get(weights)))
  write_json(folder / meta_file, meta)
  return folder


def read_instrument_weights(path: Path, expected, what: str) -> dict:
  """The weights in `path`, checked to have the shapes of `expected` (abstract weights of the
  network `what` names, e.g. "a 64 px reader"); anything else is a one-line UserError."""
  try:
    stored = flax.serialization.msgpack_restore(path.read_bytes())
  except Exception as e:  # msgpack raises several unrelated types for truncated input
    raise UserError(f"{path} is corrupt or truncated ({type(e).__name__}); retrain it") from None
  shape_of = lambda tree: {
    k: np.shape(v) for k, v in flax.traverse_util.flatten_dict(tree, sep="/").items()
  }
  if not isinstance(stored, dict) or shape_of(stored) != shape_of(expected):
    raise UserError(
      f"{path} does not hold the weights of {what}; its two files do not match, retrain it"
    )
  return stored
