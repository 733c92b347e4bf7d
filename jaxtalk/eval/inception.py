"""Inception-v3 up to its 2048-d pooled features ("pool3"), the image embedding FID is computed on.

Two variants of one network, both inference only (BatchNorm uses its running statistics):
- "torchvision": torchvision's `Inception3` blocks.
- "fid": the network of the FID literature, as pytorch-fid ports TensorFlow's 2015 graph
  (checkpoint pt_inception-2015-12-05-6726825d.pth). It differs from torchvision's only in the pool
  branches: Mixed_5b..5d, Mixed_6b..6e and Mixed_7b average without counting the padding, and
  Mixed_7c takes a 3x3 max instead of an average.

Frames of any size are prepared as pytorch-fid prepares them: scaled to [0, 1], resized to 299x299
bilinearly (half-pixel centres, no antialiasing, as torch's `F.interpolate(mode="bilinear",
align_corners=False)`; TensorFlow's original resize differed, and pytorch-fid's numbers follow
torch's), then mapped to [-1, 1].

Weights are read from a .safetensors file holding the PyTorch state dict, so nothing is unpickled;
`jaxtalk.eval.fid` says how to convert pytorch-fid's checkpoint once.
"""

from __future__ import annotations

import functools
from pathlib import Path

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy
from safetensors import SafetensorError

from jaxtalk.errors import UserError

VARIANTS = ("fid", "torchvision")
FEATURE_DIM = 2048
INPUT_SIZE = 299
# Frames per forward pass: every call runs at this one shape (the last batch padded), so one
# compiled program serves any number of frames of one size. pytorch-fid's default batch size.
BATCH_SIZE = 50
# Inception's BatchNorm epsilon, in TensorFlow's graph and in both PyTorch ports.
BN_EPSILON = 1e-3
# The command that turns pytorch-fid's pickled checkpoint into the file `load_inception` reads.
CONVERT_COMMAND = (
  'python -c "import torch, safetensors.torch as st; st.save_file(torch.load('
  "'pt_inception-2015-12-05-6726825d.pth', weights_only=True), 'inception_fid.safetensors')\""
)
# Flax leaf name -> the PyTorch state-dict suffix it is read from.
_TORCH_NAMES = {
  "kernel": "weight",
  "scale": "weight",
  "bias": "bias",
  "mean": "running_mean",
  "var": "running_var",
}


class BasicConv(nn.Module):
  """Convolution without bias, BatchNorm, ReLU: torchvision's `BasicConv2d`."""

  features: int
  kernel: tuple[int, int]
  strides: int = 1
  padding: str = "VALID"  # torchvision pads every stride-1 conv by kernel // 2, i.e. "SAME"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    # Full float32 on every backend: FID is a small difference of large traces, and a TF32 or
    # bfloat16 convolution on an accelerator would move it.
    x = nn.Conv(
      self.features,
      self.kernel,
      self.strides,
      self.padding,
      use_bias=False,
      precision=jax.lax.Precision.HIGHEST,
      name="conv",
    )(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name="bn")(x)
    return nn.relu(x)


def _pool_branch(x: jax.Array, pool: str) -> jax.Array:
  """The 3x3 stride-1 pool of a branch_pool: "avg" counts the zero padding in the average (torch's
  default), "avg_unpadded" averages only the pixels inside the image, "max" takes the maximum."""
  padding = ((1, 1), (1, 1))
  if pool == "max":
    return nn.max_pool(x, (3, 3), padding=padding)
  return nn.avg_pool(x, (3, 3), padding=padding, count_include_pad=pool == "avg")


class InceptionA(nn.Module):
  pool_features: int
  pool: str

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch1x1 = BasicConv(64, (1, 1), name="branch1x1")(x)
    branch5x5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
    branch5x5 = BasicConv(64, (5, 5), padding="SAME", name="branch5x5_2")(branch5x5)
    branch3x3dbl = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
    branch3x3dbl = BasicConv(96, (3, 3), padding="SAME", name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = BasicConv(96, (3, 3), padding="SAME", name="branch3x3dbl_3")(branch3x3dbl)
    branch_pool = BasicConv(self.pool_features, (1, 1), name="branch_pool")(
      _pool_branch(x, self.pool)
    )
    return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch3x3 = BasicConv(384, (3, 3), strides=2, name="branch3x3")(x)
    branch3x3dbl = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
    branch3x3dbl = BasicConv(96, (3, 3), padding="SAME", name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = BasicConv(96, (3, 3), strides=2, name="branch3x3dbl_3")(branch3x3dbl)
    branch_pool = nn.max_pool(x, (3, 3), strides=(2, 2))
    return jnp.concatenate([branch3x3, branch3x3dbl, branch_pool], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int
  pool: str

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c7 = self.channels_7x7
    row, column = (1, 7), (7, 1)  # the factorised 7x7: one row of 7, then one column of 7
    branch1x1 = BasicConv(192, (1, 1), name="branch1x1")(x)
    branch7x7 = BasicConv(c7, (1, 1), name="branch7x7_1")(x)
    branch7x7 = BasicConv(c7, row, padding="SAME", name="branch7x7_2")(branch7x7)
    branch7x7 = BasicConv(192, column, padding="SAME", name="branch7x7_3")(branch7x7)
    branch7x7dbl = BasicConv(c7, (1, 1), name="branch7x7dbl_1")(x)
    for index, (features, kernel) in enumerate(
      ((c7, column), (c7, row), (c7, column), (192, row)), start=2
    ):
      branch7x7dbl = BasicConv(features, kernel, padding="SAME", name=f"branch7x7dbl_{index}")(
        branch7x7dbl
      )
    branch_pool = BasicConv(192, (1, 1), name="branch_pool")(_pool_branch(x, self.pool))
    return jnp.concatenate([branch1x1, branch7x7, branch7x7dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch3x3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
    branch3x3 = BasicConv(320, (3, 3), strides=2, name="branch3x3_2")(branch3x3)
    branch7x7x3 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
    branch7x7x3 = BasicConv(192, (1, 7), padding="SAME", name="branch7x7x3_2")(branch7x7x3)
    branch7x7x3 = BasicConv(192, (7, 1), padding="SAME", name="branch7x7x3_3")(branch7x7x3)
    branch7x7x3 = BasicConv(192, (3, 3), strides=2, name="branch7x7x3_4")(branch7x7x3)
    branch_pool = nn.max_pool(x, (3, 3), strides=(2, 2))
    return jnp.concatenate([branch3x3, branch7x7x3, branch_pool], axis=-1)


class InceptionE(nn.Module):
  pool: str

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    # Each 3x3 ends in a 1x3 and a 3x1 side by side, concatenated in that order.
    split = lambda y, prefix: [
      BasicConv(384, (1, 3), padding="SAME", name=f"{prefix}a")(y),
      BasicConv(384, (3, 1), padding="SAME", name=f"{prefix}b")(y),
    ]
    branch1x1 = BasicConv(320, (1, 1), name="branch1x1")(x)
    branch3x3 = split(BasicConv(384, (1, 1), name="branch3x3_1")(x), "branch3x3_2")
    branch3x3dbl = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
    branch3x3dbl = BasicConv(384, (3, 3), padding="SAME", name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = split(branch3x3dbl, "branch3x3dbl_3")
    branch_pool = BasicConv(192, (1, 1), name="branch_pool")(_pool_branch(x, self.pool))
    return jnp.concatenate([branch1x1, *branch3x3, *branch3x3dbl, branch_pool], axis=-1)


class InceptionV3(nn.Module):
  """Images in [-1, 1] `[N, 299, 299, 3]` -> pool3 features `[N, 2048]`.

  Submodules carry the PyTorch state dict's names, so `Mixed_5b.branch1x1.conv.weight` is
  params["Mixed_5b"]["branch1x1"]["conv"]["kernel"].
  """

  variant: str = "fid"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fid = self.variant == "fid"
    pool = "avg_unpadded" if fid else "avg"
    x = BasicConv(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
    x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = BasicConv(64, (3, 3), padding="SAME", name="Conv2d_2b_3x3")(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2))
    x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2))
    for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
      x = InceptionA(pool_features, pool, name=name)(x)
    x = InceptionB(name="Mixed_6a")(x)
    for name, channels_7x7 in (
      ("Mixed_6b", 128),
      ("Mixed_6c", 160),
      ("Mixed_6d", 160),
      ("Mixed_6e", 192),
    ):
      x = InceptionC(channels_7x7, pool, name=name)(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(pool, name="Mixed_7b")(x)
    x = InceptionE("max" if fid else "avg", name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))


def preprocess(frames: jax.Array) -> jax.Array:
  """uint8 frames `[N, H, W, 3]` -> float32 `[N, 299, 299, 3]` in [-1, 1], as pytorch-fid."""
  x = frames.astype(jnp.float32) / 255.0
  x = jax.image.resize(x, (x.shape[0], INPUT_SIZE, INPUT_SIZE, 3), "linear", antialias=False)
  return x * 2.0 - 1.0


@functools.partial(jax.jit, static_argnames="variant")
def _pool3(variables: dict, frames: jax.Array, variant: str) -> jax.Array:
  return InceptionV3(variant).apply(variables, preprocess(frames))


class InceptionFeatures:
  """A loaded Inception-v3: `features(frames)` gives the pool3 features of uint8 frames."""

  def __init__(self, variables: dict, variant: str = "fid", batch_size: int = BATCH_SIZE):
    _check_variant(variant)
    self.variables = jax.device_put(variables)
    self.variant = variant
    self.batch_size = batch_size

  def features(self, frames: np.ndarray) -> np.ndarray:
    """uint8 frames `[N, H, W, 3]` of any size -> float64 `[N, 2048]`.

    Compiles once per frame size: the last batch is padded to `batch_size`.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
      raise ValueError(f"expected uint8 frames [N, H, W, 3], got {frames.dtype} {frames.shape}")
    pooled = []
    for start in range(0, len(frames), self.batch_size):
      batch = frames[start : start + self.batch_size]
      batch = np.pad(batch, ((0, self.batch_size - len(batch)), (0, 0), (0, 0), (0, 0)))
      pooled.append(_pool3(self.variables, batch, self.variant))
    if not pooled:
      return np.zeros((0, FEATURE_DIM))
    # Every batch was dispatched before any result is read, so the device never waits on the host.
    return np.concatenate([np.asarray(p, np.float64) for p in pooled])[: len(frames)]


def _check_variant(variant: str):
  if variant not in VARIANTS:
    raise ValueError(f"unknown Inception variant {variant!r}; choose from {VARIANTS}")


def _torch_name(path: tuple[str, ...]) -> str:
  return ".".join((*path[:-1], _TORCH_NAMES[path[-1]]))


def load_inception(path, variant: str = "fid", batch_size: int = BATCH_SIZE) -> InceptionFeatures:
  """The Inception-v3 whose PyTorch state dict is in the .safetensors file `path`.

  Tensor names are the state dict's ("Mixed_5b.branch1x1.conv.weight", ...); the classifier
  ("fc.*", "AuxLogits.*") and BatchNorm's step counters are not read. A file that cannot be read,
  or lacks a tensor, or holds one of the wrong shape, is a one-line `UserError`.
  """
  _check_variant(variant)
  path = Path(path)
  try:
    tensors = safetensors.numpy.load_file(path)
  except (OSError, SafetensorError) as e:
    raise UserError(
      f"{path} cannot be read as a .safetensors file ({e}); convert pytorch-fid's checkpoint "
      f"once with: {CONVERT_COMMAND}"
    ) from None
  abstract = jax.eval_shape(
    InceptionV3(variant).init,
    jax.random.key(0),
    jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32),
  )
  variables = {}
  for (collection, *module_path), leaf in flax.traverse_util.flatten_dict(abstract).items():
    name = _torch_name(tuple(module_path))
    conv = module_path[-1] == "kernel"
    # torch stores a conv kernel as [out, in, height, width], flax as [height, width, in, out].
    expected = (leaf.shape[3], leaf.shape[2], *leaf.shape[:2]) if conv else leaf.shape
    if name not in tensors:
      raise UserError(f"{path} lacks tensor {name}: it is not an Inception-v3 state dict")
    tensor = tensors[name]
    if tensor.shape != expected:
      raise UserError(
        f"{path}: tensor {name} has shape {tensor.shape}, Inception-v3 needs {expected}"
      )
    value = tensor.transpose(2, 3, 1, 0) if conv else tensor
    variables[(collection, *module_path)] = np.asarray(value, np.float32)
  return InceptionFeatures(flax.traverse_util.unflatten_dict(variables), variant, batch_size)
