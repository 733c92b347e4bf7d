"""Photographic appearance for SynthTalk faces, cut from the photographs scikit-image bundles.

Flat colours teach a renderer that every surface is flat, and a real portrait is then nothing like
its training data. So backgrounds are blurred crops of real photographs (a portrait's background is
out of focus), and skin and hair carry the fine luminance detail of real surfaces: high-passed,
so the identity's colours stay what its parameters say. Grass blades and cat fur read as strands
of hair; gravel and the moon's surface as pores and blemishes at low contrast.

Everything is drawn from a texture seed (an identity parameter), and crops are chosen in
normalised image units, so one identity looks the same at every resolution.

The astronaut is not used: it is the real portrait the evaluation talks with, and no crop of it
may be seen in training.
"""

import functools

import numpy as np
import scipy.ndimage
import skimage.data
import skimage.transform

_BACKGROUNDS = (
  "coffee",
  "chelsea",
  "rocket",
  "hubble_deep_field",
  "immunohistochemistry",
  "retina",
  "brick",
  "gravel",
  "coins",
  "moon",
  "cell",
)
_HAIR = ("grass", "chelsea")
_SKIN = ("gravel", "moon")


@functools.cache
def _photo(name: str) -> np.ndarray:
  """A bundled photograph as float32 `[H, W, 3]` in [0, 1] (grey ones repeated over channels)."""
  image = getattr(skimage.data, name)().astype(np.float32) / 255.0
  return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image[..., :3]


def _crop(rng: np.random.Generator, image: np.ndarray, fraction: float, size: int) -> np.ndarray:
  """A random square of `fraction` of the image's shorter side, randomly mirrored, at `size`^2."""
  height, width = image.shape[:2]
  side = max(8, int(fraction * min(height, width)))
  top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
  crop = image[top : top + side, left : left + side]
  if rng.random() < 0.5:
    crop = crop[:, ::-1]
  return skimage.transform.resize(crop, (size, size), order=1, anti_aliasing=True).astype(
    np.float32
  )


def background(rng: np.random.Generator, size: int) -> np.ndarray:
  """A defocused, tinted photograph: float32 colour planes `[3, size, size]` in [0, 1]."""
  photo = _photo(_BACKGROUNDS[rng.integers(len(_BACKGROUNDS))])
  crop = _crop(rng, photo, rng.uniform(0.35, 1.0), size)
  # Blur in normalised units (a fraction of the image), so it is the same picture at any size.
  sigma = rng.uniform(0.0, 0.03) * size
  crop = scipy.ndimage.gaussian_filter(crop, (sigma, sigma, 0))
  tint = rng.uniform(0.55, 1.1) * (1.0 + rng.normal(0.0, 0.12, 3))
  return np.clip(crop * tint, 0.0, 1.0).transpose(2, 0, 1).astype(np.float32)


def detail(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
  """Zero-mean, unit-std luminance detail `[size, size]` of a real surface ("hair" or "skin")."""
  names = {"hair": _HAIR, "skin": _SKIN}[kind]
  photo = _photo(names[rng.integers(len(names))])
  # A hair texture spans about a head, skin detail is finer-grained.
  fraction = rng.uniform(0.25, 0.5) if kind == "hair" else rng.uniform(0.1, 0.2)
  luma = _crop(rng, photo, fraction, size).mean(axis=-1)
  # High-pass: what varies within a few percent of the image, not its overall shading.
  luma = luma - scipy.ndimage.gaussian_filter(luma, 0.03 * size)
  return ((luma - luma.mean()) / (luma.std() + 1e-6)).astype(np.float32)
