"""The model to benchmark: a bundle, or random weights for the demo config.

Speed does not depend on the weights' values, so random weights time the same programs as
trained ones; only their output is meaningless.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import jax
import ml_collections
import numpy as np

from jaxtalk.errors import UserError
from jaxtalk.models.factory import Models

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.py"


def load_config_file(path: Path) -> ml_collections.ConfigDict:
  """`get_config()` of a config file in configs/."""
  if not path.is_file():
    raise UserError(
      f"config file {path} not found; run from a jaxtalk source checkout or pass "
      f"--checkpoint with a model bundle"
    )
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def random_params(config, seed: int = 0) -> dict:
  """Random weights of all four models, laid out as a bundle holds them.

  Shapes come from the model factory, traced abstractly; values are drawn here, each weight
  normal with variance 1 / fan-in (its leading dimensions), vectors with standard deviation 0.1.
  This is not the models' own initialisation, for two reasons: compiling those init functions
  takes minutes on a small CPU, and their zero-initialised output layers would make an untrained
  renderer ignore the motion, so every frame would come out the same.
  """
  rng = np.random.default_rng(seed)

  def draw(leaf):
    scale = 1 / math.sqrt(math.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 0.1
    return (scale * rng.standard_normal(leaf.shape)).astype(leaf.dtype)

  return jax.tree.map(draw, Models.from_config(config).abstract_params())
