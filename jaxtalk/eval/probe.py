"""A ridge-regression probe: the measuring instrument that reads a quantity off a latent.

Fit in closed form with numpy, so the instrument has no training run of its own to go wrong: given
latents and a target per frame, the weights are the exact minimiser of squared error plus a small
L2 penalty (which keeps the solve well posed when latent dimensions are collinear).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class LinearProbe:
  weights: np.ndarray  # [D]
  bias: float

  def __call__(self, latents: np.ndarray) -> np.ndarray:
    """latents [..., D] -> predictions [...]."""
    return np.asarray(latents, np.float64) @ self.weights + self.bias


def fit_probe(latents: np.ndarray, targets: np.ndarray, ridge: float = 1e-3) -> LinearProbe:
  """Ridge regression of targets [N] on latents [N, D]; the bias is fit but not penalised.

  The penalty applies to the latents standardised per dimension, with `ridge` per frame, so it
  shrinks every dimension alike whatever its scale, and means the same for any number of frames;
  0 gives ordinary least squares. Constant dimensions carry nothing and get weight 0.
  """
  x = np.asarray(latents, np.float64)
  y = np.asarray(targets, np.float64)
  if x.ndim != 2 or y.shape != x.shape[:1] or not len(y):
    raise ValueError(f"fit_probe needs latents [N, D] and targets [N], got {x.shape} and {y.shape}")
  x_mean, x_std, y_mean = x.mean(0), x.std(0), y.mean()
  scale = np.where(x_std > 0, x_std, np.inf)  # constant dimensions standardise to 0
  standard = (x - x_mean) / scale
  gram = standard.T @ standard + (ridge * len(y) + np.finfo(np.float64).eps) * np.eye(x.shape[1])
  weights = np.linalg.solve(gram, standard.T @ (y - y_mean)) / scale
  return LinearProbe(weights=weights, bias=float(y_mean - x_mean @ weights))
