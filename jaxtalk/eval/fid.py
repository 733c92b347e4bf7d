"""Fréchet Inception Distance (Heusel et al. 2017) between two sets of Inception pool3 features.

Each set is summarised by the mean and covariance of its features, and FID is the Fréchet distance
between the two Gaussians: |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).

FID is only meaningful, and comparable with published numbers, with the standard weights: the
FID variant of `jaxtalk.eval.inception` loaded from pytorch-fid's checkpoint
pt_inception-2015-12-05-6726825d.pth. jaxtalk unpickles nothing, so convert it once where torch is
installed (torch's weights-only loader reads it without running code):

  python -c "import torch, safetensors.torch as st; st.save_file(torch.load('pt_inception-2015-12-05-6726825d.pth', weights_only=True), 'inception_fid.safetensors')"

and load `inception_fid.safetensors` with `load_inception(path, variant="fid")`.

FID is biased by the sample count (fewer samples give larger values), so FID values computed from
different numbers of samples are not comparable with each other.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from jaxtalk.errors import UserError


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(mean `[D]`, covariance `[D, D]`) of features `[N, D]`, in float64."""
  features = np.asarray(features, np.float64)
  return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(
  mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
  """The Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

  With fewer samples than feature dimensions the covariances are singular and the square root of
  their product may not be finite; then `eps` is added to both diagonals, as pytorch-fid does.
  See the module docstring for when the value means anything.
  """
  mu1, mu2 = (np.atleast_1d(np.asarray(mu, np.float64)) for mu in (mu1, mu2))
  sigma1, sigma2 = (np.atleast_2d(np.asarray(sigma, np.float64)) for sigma in (sigma1, sigma2))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(
      f"mismatched statistics: means {mu1.shape}, {mu2.shape}; covariances "
      f"{sigma1.shape}, {sigma2.shape}"
    )
  covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
  if not np.isfinite(covmean).all():
    offset = eps * np.eye(len(sigma1))
    covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  # The product of two covariances has a real, non-negative spectrum; rounding can leave a tiny
  # imaginary part in its square root, which is dropped. A large one means broken statistics.
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      largest = np.max(np.abs(covmean.imag))
      raise ValueError(f"sqrt(sigma1 sigma2) has an imaginary part of {largest:.3g}")
    covmean = covmean.real
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """FID between two sets of Inception pool3 features, each `[N, 2048]` (`InceptionFeatures`).

  Both sets need at least 2 samples (a covariance); far more (thousands) for a stable value. See
  the module docstring for the standard weights and why values at different sample counts are not
  comparable.
  """
  for which, features in (("first", features_a), ("second", features_b)):
    if len(features) < 2:
      raise UserError(f"FID needs at least 2 samples in each set; the {which} has {len(features)}")
  return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))
