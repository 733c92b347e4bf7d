"""Model-agnostic training: optimizer, train state, jitted step, checkpoints, progress, loop."""

from jaxtalk.training.checkpoint import Checkpointer, load_params, read_config
from jaxtalk.training.loop import train
from jaxtalk.training.optim import ema_update, make_optimizer
from jaxtalk.training.progress import ProgressLogger
from jaxtalk.training.state import (
  TrainState,
  abstract_train_state,
  create_train_state,
  init_train_state,
)
from jaxtalk.training.step import make_eval_step, make_train_step

__all__ = [
  "Checkpointer",
  "load_params",
  "read_config",
  "train",
  "ema_update",
  "make_optimizer",
  "ProgressLogger",
  "TrainState",
  "abstract_train_state",
  "create_train_state",
  "init_train_state",
  "make_eval_step",
  "make_train_step",
]
