"""One stage's training run as a typed value: what the loop and the optimizer read.

A stage's `<stage>_train` config section holds these keys and the stage's own (its loss settings);
each stage subclasses `TrainSettings` with those, so the section is read in one place and a key
that no field takes is an error rather than a silent no-op.
"""

from __future__ import annotations

import dataclasses

from jaxtalk.errors import UserError


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  batch_size: int
  num_steps: int
  learning_rate: float
  warmup_steps: int
  end_learning_rate_factor: float
  weight_decay: float
  adam_b1: float
  adam_b2: float
  grad_clip: float
  ema_decay: float
  log_every: int
  checkpoint_every: int

  @classmethod
  def from_section(cls, section, name: str) -> TrainSettings:
    """The settings in the config section `name`, which must hold exactly this class's fields."""
    fields = {field.name for field in dataclasses.fields(cls)}
    values = section.to_dict()
    for key in sorted(set(values) - fields):
      raise UserError(f"config.{name}.{key} is not a setting of this stage")
    for key in sorted(fields - set(values)):
      raise UserError(f"config.{name} lacks {key}")
    return cls(**values)
