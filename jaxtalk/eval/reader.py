"""An independent SynthTalk reader: pixels -> every ground-truth motion and identity parameter.

A small conv net trained on SynthTalk frames, whose exact parameters are known, by
`python -m jaxtalk.eval.train_reader`. It shares no code or weights with the models under test, so
a model cannot score well by making frames that only its own motion encoder reads as right.

A reader is a folder of two files: `reader.msgpack` (the network's weights, flax-serialised) and
`reader.json` (format version, SynthTalk version, image size, parameter names, the per-parameter
target normalisation, and the accuracy measured on held-out clips). It reads frames of any whole
multiple of its size, box-averaged down. The shipped one reads at 64 px and was trained on 128 px
SynthTalk frames averaged down the same way; it is in `jaxtalk/assets/reader`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.data.clips import Clip
from jaxtalk.data.synthtalk.face import IDENTITY_PARAMS
from jaxtalk.data.synthtalk.generate import SYNTHTALK_VERSION
from jaxtalk.data.synthtalk.motion import MOTION_PARAMS
from jaxtalk.demo import SHIPPED_READER
from jaxtalk.errors import UserError
from jaxtalk.eval.instruments import read_instrument_weights, save_instrument
from jaxtalk.eval.metrics import pearson

FORMAT_VERSION = 1
WEIGHTS_FILE, META_FILE = "reader.msgpack", "reader.json"
PARAM_NAMES = MOTION_PARAMS + IDENTITY_PARAMS
# Frames per forward pass: every call runs at this one shape (the last batch padded), so one
# compiled program reads clips of any length.
READ_BATCH = 64
_TRAIN_COMMAND = "python -m jaxtalk.eval.train_reader --data DIR --out DIR"


class ReaderNet(nn.Module):
  """Frames in [0, 1] `[B, S, S, 3]` (S even) -> normalised parameters `[B, num_outputs]`.

  2x2 pixel blocks are folded into channels, then each strided convolution halves the resolution
  until it is at most 4 px. No stride-1 convolutions: on a CPU they made a training step several
  times slower (0.14-1.4 s against 0.044 s for 64 frames at 64 px, widths 32-64-128) and, for
  the same training time, read no better. The head sees the flattened map rather than a pooled
  one, because where a feature is (lips apart, lids down, eyes off centre) is what is read.
  """

  num_outputs: int
  base_width: int = 64  # rather than 32: blinks read better (held-out Pearson 0.93 against 0.88)
  max_width: int = 128
  hidden: int = 256
  dropout: float = 0.3  # on the hidden layer while training: held-out faces read better with it

  @nn.compact
  def __call__(self, pixels: jax.Array, train: bool = False) -> jax.Array:
    x, width = _space_to_depth(pixels * 2.0 - 1.0), self.base_width
    while x.shape[1] > 4:
      x = nn.relu(nn.Conv(width, (3, 3), strides=2)(x))
      width = min(2 * width, self.max_width)
    x = nn.relu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_outputs)(x)


def _space_to_depth(x: jax.Array) -> jax.Array:
  """`[B, 2H, 2W, C]` -> `[B, H, W, 4C]`: each 2x2 block of pixels becomes one pixel."""
  batch, height, width, channels = x.shape
  x = x.reshape(batch, height // 2, 2, width // 2, 2, channels).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(batch, height // 2, width // 2, 4 * channels)


def reader_net() -> ReaderNet:
  return ReaderNet(num_outputs=len(PARAM_NAMES))


def box_downsample(frames: np.ndarray, size: int) -> np.ndarray:
  """uint8 `[T, k size, k size, C]` -> `[T, size, size, C]`, each k x k block averaged."""
  factor = frames.shape[1] // size
  if factor == 1:
    return frames
  blocks = frames.reshape(len(frames), size, factor, size, factor, frames.shape[-1])
  return np.rint(blocks.mean(axis=(2, 4), dtype=np.float32)).astype(np.uint8)


def unit_pixels(frames: jax.Array) -> jax.Array:
  """uint8 frames -> float32 in [0, 1]."""
  return frames.astype(jnp.float32) / 255.0


def init_weights(image_size: int, key: jax.Array) -> dict:
  frames = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  return reader_net().init(key, frames)["params"]


@jax.jit
def _read_batch(weights, mean, std, frames):
  return reader_net().apply({"params": weights}, unit_pixels(frames)) * std + mean


def clip_targets(clip: Clip) -> np.ndarray:
  """Ground truth `[T, len(PARAM_NAMES)]` float32 of a SynthTalk clip: its motion, then identity."""
  identity = np.broadcast_to(clip.identity, (len(clip.motion), len(clip.identity)))
  return np.concatenate([clip.motion, identity], axis=1).astype(np.float32)


class Reader:
  """A trained reader: `read(frames)` gives every parameter of every frame.

  `mean`/`std` `[len(PARAM_NAMES)]` undo the target normalisation the network was trained with;
  `accuracy` is {param: {"pearson", "mae"}} on held-out clips, `training` what it was trained on.
  """

  def __init__(
    self,
    *,
    image_size: int,
    weights: dict,
    mean: np.ndarray,
    std: np.ndarray,
    accuracy: dict | None = None,
    training: dict | None = None,
    synthtalk_version: int = SYNTHTALK_VERSION,
  ):
    self.image_size = image_size
    self.weights = jax.device_put(weights)
    self.mean = np.asarray(mean, np.float32)
    self.std = np.asarray(std, np.float32)
    self.accuracy = accuracy
    self.training = training
    self.synthtalk_version = synthtalk_version

  def read(self, frames: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 frames `[T, k S, k S, 3]` -> {param: float32 `[T]`} for every name in PARAM_NAMES.

    Frames k times the reader's size S (any whole k) are box-averaged down to it first.
    """
    self._check_frames(frames)
    frames = box_downsample(frames, self.image_size)
    values = [
      np.asarray(_read_batch(self.weights, self.mean, self.std, batch))[:count]
      for batch, count in _padded_batches(frames)
    ]
    table = np.concatenate(values) if values else np.zeros((0, len(PARAM_NAMES)), np.float32)
    return dict(zip(PARAM_NAMES, table.T))

  def _check_frames(self, frames: np.ndarray) -> None:
    size = self.image_size
    if (
      getattr(frames, "dtype", None) != np.uint8
      or frames.ndim != 4
      or frames.shape[1] != frames.shape[2]
      or frames.shape[1] % size
      or frames.shape[3] != 3
    ):
      got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames)
      raise UserError(
        f"the reader reads uint8 frames [T, S, S, 3] with S a multiple of {size}, got {got}; "
        f"resize the frames or train a reader at their size ({_TRAIN_COMMAND})"
      )

  def save(self, folder) -> Path:
    """Writes reader.msgpack and reader.json into `folder`, each atomically."""
    return save_instrument(folder, WEIGHTS_FILE, META_FILE, self.weights, self._meta())

  def _meta(self) -> dict:
    return {
      "format_version": FORMAT_VERSION,
      "synthtalk_version": self.synthtalk_version,
      "image_size": self.image_size,
      "parameters": list(PARAM_NAMES),
      "normalisation": {
        name: {"mean": float(m), "std": float(s)}
        for name, m, s in zip(PARAM_NAMES, self.mean, self.std)
      },
      "held_out_accuracy": self.accuracy,
      "training": self.training,
    }

  @classmethod
  def load(cls, folder=SHIPPED_READER, image_size: int | None = None) -> Reader:
    """The reader saved in `folder`; with `image_size`, checked to read frames of that size.

    Anything missing, corrupt or made for other frames is a one-line UserError.
    """
    folder = Path(folder)
    fields = _read_meta(folder)
    if image_size is not None and image_size % fields["image_size"]:
      raise UserError(
        f"the reader in {folder} reads frames of a multiple of {fields['image_size']} px, not "
        f"{image_size} px; train one at {image_size} px ({_TRAIN_COMMAND})"
      )
    expected = jax.eval_shape(
      functools.partial(init_weights, fields["image_size"]), jax.random.key(0)
    )
    weights = read_instrument_weights(
      folder / WEIGHTS_FILE, expected, f"a {fields['image_size']} px reader"
    )
    return cls(weights=weights, **fields)


def _padded_batches(frames: np.ndarray):
  """(batch of exactly READ_BATCH frames, how many of them are real) over `frames`."""
  for start in range(0, len(frames), READ_BATCH):
    chunk = frames[start : start + READ_BATCH]
    padding = np.zeros((READ_BATCH - len(chunk),) + chunk.shape[1:], chunk.dtype)
    yield np.concatenate([chunk, padding]), len(chunk)


def _read_meta(folder: Path) -> dict:
  """Every `Reader` argument but the weights, from reader.json, checked."""
  if not folder.is_dir():
    raise UserError(f"reader folder {folder} does not exist; train one with {_TRAIN_COMMAND}")
  for name in (META_FILE, WEIGHTS_FILE):
    if not (folder / name).is_file():
      raise UserError(
        f"{folder} is not a SynthTalk reader (no {name}); train one with {_TRAIN_COMMAND}"
      )
  try:
    meta = json.loads((folder / META_FILE).read_text())
    version, names, norm = meta["format_version"], meta["parameters"], meta["normalisation"]
    fields = {
      "image_size": meta["image_size"],
      "mean": np.array([norm[name]["mean"] for name in PARAM_NAMES], np.float32),
      "std": np.array([norm[name]["std"] for name in PARAM_NAMES], np.float32),
      "accuracy": meta["held_out_accuracy"],
      "training": meta["training"],
      "synthtalk_version": meta["synthtalk_version"],
    }
  except (ValueError, KeyError, TypeError) as e:
    raise UserError(
      f"{folder / META_FILE} is corrupt ({type(e).__name__}: {e}); retrain the reader"
    ) from None
  if version != FORMAT_VERSION:
    raise UserError(
      f"{folder} is reader format {version}, this jaxtalk reads format {FORMAT_VERSION}; retrain it"
    )
  size = fields["image_size"]
  if names != list(PARAM_NAMES) or not isinstance(size, int) or size < 8 or size % 2:
    raise UserError(
      f"{folder} was made for other SynthTalk parameters or frames; retrain it with {_TRAIN_COMMAND}"
    )
  return fields


def held_out_accuracy(reader: Reader, clips: Iterable[Clip]) -> dict:
  """{param: {"pearson", "mae"}} of the reader on every frame of `clips`, pooled over clips.

  Pooled rather than per clip, because identity parameters are constant within a clip: their
  correlation exists only across clips.
  """
  readings, truths = [], []
  for clip in clips:
    read = reader.read(clip.frames)
    readings.append(np.stack([read[name] for name in PARAM_NAMES], axis=1))
    truths.append(clip_targets(clip))
  if not truths:
    raise UserError("no held-out clips to measure the reader on")
  predicted = np.concatenate(readings).astype(np.float64)
  truth = np.concatenate(truths).astype(np.float64)
  return {
    name: {
      "pearson": pearson(predicted[:, i], truth[:, i]),
      "mae": float(np.mean(np.abs(predicted[:, i] - truth[:, i]))),
    }
    for i, name in enumerate(PARAM_NAMES)
  }


def format_accuracy(accuracy: dict) -> str:
  """The held-out accuracy as a plain-text table, one row per parameter."""
  lines = [f"{'parameter':<16}{'Pearson':>9}{'MAE':>10}"]
  lines += [
    f"{name:<16}{row['pearson']:>9.3f}{row['mae']:>10.4f}" for name, row in accuracy.items()
  ]
  return "\n".join(lines)
