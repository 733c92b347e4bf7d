"""Linear probes: what a per-frame representation holds, read by ridge regression.

A probe is fitted on some people and scored on others (folds split groups, never the rows of one
group), so it finds what generalises across identities, not one person's quirks. R^2 is against
the overall mean: a probe that learned nothing scores about 0 (slightly below), one that reads the
targets exactly 1. `jaxtalk.eval.identity` asks whether the motion latents know who it is (they
should not); `motion_content` asks how much of each motion parameter they carry (all of it,
ideally: what the latent misses, no renderer can show).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PROBE_FOLDS = 5
# Ridge strength on standardised features; a few points of R^2 either way for 10x smaller or
# larger on the demo's latents, so the probe does not hinge on it.
PROBE_RIDGE = 10.0


def _ridge_fit_predict(x_train, y_train, x_test):
  mean, std = x_train.mean(0), x_train.std(0) + 1e-8
  a, b = (x_train - mean) / std, (x_test - mean) / std
  y_mean = y_train.mean(0)
  gram = a.T @ a + PROBE_RIDGE * np.eye(a.shape[1])
  return b @ np.linalg.solve(gram, a.T @ (y_train - y_mean)) + y_mean


def grouped_probe(
  features: np.ndarray, targets: np.ndarray, groups: np.ndarray, names: Sequence[str]
) -> dict | None:
  """Out-of-fold R^2 of a ridge probe from `features` [N, D] to `targets` [N, P] named `names`.

  `groups` [N] names each row's person. Returns {"r2": the mean over the targets that vary,
  "per_param": {name: r2}}, or None when there are fewer people than folds.
  """
  people = np.unique(groups)
  if len(people) < PROBE_FOLDS:
    return None
  fold_of = {person: i % PROBE_FOLDS for i, person in enumerate(people)}
  fold = np.array([fold_of[g] for g in groups])
  predicted = np.zeros_like(targets, dtype=np.float64)
  for k in range(PROBE_FOLDS):
    test = fold == k
    predicted[test] = _ridge_fit_predict(features[~test], targets[~test], features[test])
  total = np.sum((targets - targets.mean(0)) ** 2, axis=0)
  residual = np.sum((targets - predicted) ** 2, axis=0)
  varies = total > 0
  r2 = 1.0 - residual[varies] / total[varies]
  kept = [name for name, v in zip(names, varies) if v]
  return {"r2": float(np.mean(r2)), "per_param": dict(zip(kept, r2.round(4).tolist()))}


def motion_content(
  latents: Sequence[np.ndarray], motions: Sequence[np.ndarray], groups: Sequence, names
) -> dict | None:
  """How much of each motion parameter's change within a clip the motion latents carry.

  Per clip: latents [T, D] and true motion [T, P] of the same T frames, its person in `groups`.
  The probe reads each frame's change from the clip's first frame (latent change -> motion
  change), the quantity the renderer turns into pixels; the first frames themselves are left out.
  """
  change = lambda rows: np.concatenate([r[1:] - r[:1] for r in rows]).astype(np.float64)
  people = np.concatenate([[g] * (len(r) - 1) for g, r in zip(groups, latents)])
  return grouped_probe(change(latents), change(motions), people, names)
