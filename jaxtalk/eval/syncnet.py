"""An independent audio-visual sync network, and the LSE-D / LSE-C lip-sync scores it gives.

A SyncNet-style pair of towers (Chung & Zisserman 2016), trained here by
`python -m jaxtalk.eval.train_syncnet` and sharing no code or weights with the models under test:
the visual tower embeds a window of `WINDOW` consecutive mouth crops, the audio tower the log-mel
spectrogram of the same 0.2 s of speech, each to a unit vector, so that in-sync pairs lie close.

The scores follow the talking-head literature (Prajwal et al. 2020, Wav2Lip's evaluation): for each
video, the distance between every visual window and the audio window shifted by each offset in
-MAX_OFFSET..+MAX_OFFSET frames, averaged over windows per offset. LSE-D is the smallest of these
mean distances, LSE-C the median over offsets minus that minimum (how clearly one offset stands
out), and the offset is where the minimum lies (positive = the video is late, as
`jaxtalk.eval.metrics.sync_offset`). The embeddings here are unit vectors, so distances lie in
[0, 2]: LSE-D values are comparable between models scored by one sync network, not with the
numbers papers report from theirs.

A sync network is a folder of two files: `syncnet.msgpack` (the weights, flax-serialised) and
`syncnet.json` (format version, the frame size and window it was trained on, what it was trained
on and how it did on held-out clips). The shipped one, trained on 128 px SynthTalk sentences, is in
`jaxtalk/assets/syncnet`.
"""

from __future__ import annotations

import json
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.demo import SHIPPED_SYNCNET
from jaxtalk.errors import UserError
from jaxtalk.eval.instruments import read_instrument_weights, save_instrument
from jaxtalk.models.audio.mel import log_mel
from jaxtalk.timebase import FPS, SAMPLES_PER_FRAME

FORMAT_VERSION = 1
WEIGHTS_FILE, META_FILE = "syncnet.msgpack", "syncnet.json"
WINDOW = 5  # video frames per embedded window: 0.2 s, SyncNet's span
MAX_OFFSET = 15  # frames searched either way (+-0.6 s), as in Wav2Lip's evaluation
# The mouth region as fractions of the square frame (top, bottom, left, right). Real clips are
# face-centred crops (`jaxtalk.data.ingest`) and SynthTalk heads sit in the same place, so one fixed
# lower-centre box holds the mouth of both through the head's motion.
MOUTH_BOX = (0.5, 0.875, 0.25, 0.75)
CROP_SHAPE = (24, 32)  # the box at 64 px; frames of other sizes are resized to it
N_MELS = 40
MELS_PER_FRAME = SAMPLES_PER_FRAME // 160  # log_mel's 10 ms hop: 4 mel frames per video frame
EMBED_DIM = 128
# Windows per forward pass: every call runs at this one shape (the last batch padded), so one
# compiled program embeds clips of any length; a 4 s clip fits in one batch.
EMBED_BATCH = 128
_TRAIN_COMMAND = "python -m jaxtalk.eval.train_syncnet --data DIR --out DIR"


class VisualTower(nn.Module):
  """Mouth-crop windows in [0, 1] `[B, WINDOW, h, w, 3]` -> unit embeddings `[B, EMBED_DIM]`.

  The window's frames are stacked on the channel axis (as Wav2Lip's SyncNet does), so the first
  layer already sees how the mouth moves.
  """

  @nn.compact
  def __call__(self, windows: jax.Array) -> jax.Array:
    batch, window, height, width, channels = windows.shape
    x = windows.transpose(0, 2, 3, 1, 4).reshape(batch, height, width, window * channels)
    x = x * 2.0 - 1.0
    for features, stride in ((32, 1), (64, 2), (64, 2), (64, 2)):
      x = nn.relu(nn.Conv(features, (3, 3), strides=stride)(x))
    x = nn.relu(nn.Dense(256)(x.reshape(batch, -1)))
    return _unit(nn.Dense(EMBED_DIM)(x))


class AudioTower(nn.Module):
  """Log-mel windows `[B, WINDOW * MELS_PER_FRAME, N_MELS]` -> unit embeddings `[B, EMBED_DIM]`."""

  @nn.compact
  def __call__(self, mels: jax.Array) -> jax.Array:
    x = mels
    for features, stride in ((64, 1), (128, 2), (128, 2)):
      x = nn.relu(nn.Conv(features, (3,), strides=stride)(x))
    x = nn.relu(nn.Dense(256)(x.reshape(x.shape[0], -1)))
    return _unit(nn.Dense(EMBED_DIM)(x))


def _unit(x: jax.Array) -> jax.Array:
  return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)


class SyncTowers(nn.Module):
  """Both towers under one parameter tree: {"visual": ..., "audio": ...}."""

  def setup(self):
    self.visual = VisualTower()
    self.audio = AudioTower()

  def __call__(self, crop_windows: jax.Array, mel_windows: jax.Array):
    return self.visual(crop_windows), self.audio(mel_windows)


def init_weights(key: jax.Array) -> dict:
  crops = jnp.zeros((1, WINDOW, *CROP_SHAPE, 3), jnp.float32)
  mels = jnp.zeros((1, WINDOW * MELS_PER_FRAME, N_MELS), jnp.float32)
  return SyncTowers().init(key, crops, mels)["params"]


def embed_crops(weights: dict, crop_windows: jax.Array) -> jax.Array:
  """uint8 crop windows `[B, WINDOW, h, w, 3]` -> `[B, EMBED_DIM]`."""
  pixels = crop_windows.astype(jnp.float32) / 255.0
  return SyncTowers().apply({"params": weights}, pixels, method=lambda m, x: m.visual(x))


def embed_mels(weights: dict, mel_windows: jax.Array) -> jax.Array:
  """Log-mel windows `[B, WINDOW * MELS_PER_FRAME, N_MELS]` -> `[B, EMBED_DIM]`."""
  return SyncTowers().apply({"params": weights}, mel_windows, method=lambda m, x: m.audio(x))


_embed_crops_jit = jax.jit(embed_crops)
_embed_mels_jit = jax.jit(embed_mels)


def mouth_box_slices(size: int) -> tuple[slice, slice]:
  """(rows, columns) of `MOUTH_BOX` in a square frame of `size` pixels."""
  top, bottom, left, right = (round(fraction * size) for fraction in MOUTH_BOX)
  return slice(top, bottom), slice(left, right)


def mouth_crops(frames: np.ndarray) -> np.ndarray:
  """uint8 frames `[T, S, S, 3]` -> their mouth boxes, uint8 `[T, *CROP_SHAPE, 3]`."""
  rows, cols = mouth_box_slices(frames.shape[1])
  crops = frames[:, rows, cols]
  if crops.shape[1:3] == CROP_SHAPE:
    return np.ascontiguousarray(crops)
  resized = jax.image.resize(
    jnp.asarray(crops, jnp.float32), (len(crops), *CROP_SHAPE, 3), "linear", antialias=True
  )
  return np.asarray(jnp.clip(jnp.round(resized), 0, 255), np.uint8)


def audio_mels(audio: np.ndarray) -> np.ndarray:
  """Audio `[T * SAMPLES_PER_FRAME]` -> log-mel `[T * MELS_PER_FRAME, N_MELS]`, frame-aligned."""
  return np.asarray(log_mel(audio, n_mels=N_MELS))


def window_index(starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(frame index `[..., WINDOW]`, mel index `[..., WINDOW * MELS_PER_FRAME]`) of windows
  starting at video frames `starts`."""
  starts = np.asarray(starts)[..., None]
  return starts + np.arange(WINDOW), MELS_PER_FRAME * starts + np.arange(WINDOW * MELS_PER_FRAME)


def offset_clip(frames: np.ndarray, audio: np.ndarray, offset: int):
  """(frames, audio) with the video `offset` frames late against its audio (early if negative).

  Both are trimmed to where they overlap, so nothing is padded: the result is `abs(offset)`
  frames shorter, and `sync_scores` should find offset `offset` in it.
  """
  num_frames = len(frames)
  late, early = max(offset, 0), max(-offset, 0)
  shifted_frames = frames[early : num_frames - late]
  shifted_audio = audio[late * SAMPLES_PER_FRAME : (num_frames - early) * SAMPLES_PER_FRAME]
  return shifted_frames, shifted_audio


class SyncNet:
  """A trained sync network: `embed(frames, audio)` gives both embeddings of every window.

  `image_size` is the frame size it was trained on (other sizes are resized to its mouth crop),
  `training` what it was trained on, `evaluation` how it did on held-out clips.
  """

  def __init__(
    self,
    *,
    weights: dict,
    image_size: int,
    training: dict | None = None,
    evaluation: dict | None = None,
  ):
    self.weights = jax.device_put(weights)
    self.image_size = image_size
    self.training = training
    self.evaluation = evaluation

  def embed(self, frames: np.ndarray, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames `[T, S, S, 3]` and their audio `[T * 640]` -> (visual, audio) embeddings,
    each float32 `[T - WINDOW + 1, EMBED_DIM]`, row t for the window of frames t..t+WINDOW-1."""
    _check_clip(frames, audio)
    return self.embed_mouths(mouth_crops(frames), audio)

  def embed_mouths(self, crops: np.ndarray, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`embed` of frames already cut to their `mouth_crops`."""
    mels = audio_mels(audio)
    visual, heard = [], []
    for starts, count in _padded_starts(len(crops) - WINDOW + 1):
      frame_index, mel_index = window_index(starts)
      visual.append(np.asarray(_embed_crops_jit(self.weights, crops[frame_index]))[:count])
      heard.append(np.asarray(_embed_mels_jit(self.weights, mels[mel_index]))[:count])
    return np.concatenate(visual), np.concatenate(heard)

  def save(self, folder) -> Path:
    """Writes syncnet.msgpack and syncnet.json into `folder`, each atomically."""
    return save_instrument(folder, WEIGHTS_FILE, META_FILE, self.weights, self._meta())

  def _meta(self) -> dict:
    return {
      "format_version": FORMAT_VERSION,
      "image_size": self.image_size,
      "window": WINDOW,
      "mouth_box": list(MOUTH_BOX),
      "crop_shape": list(CROP_SHAPE),
      "n_mels": N_MELS,
      "embed_dim": EMBED_DIM,
      "training": self.training,
      "evaluation": self.evaluation,
    }

  @classmethod
  def load(cls, folder=SHIPPED_SYNCNET) -> SyncNet:
    """The sync network saved in `folder`; anything missing or corrupt is a one-line UserError."""
    folder = Path(folder)
    fields = _read_meta(folder)
    expected = jax.eval_shape(init_weights, jax.random.key(0))
    weights = read_instrument_weights(folder / WEIGHTS_FILE, expected, "this sync network")
    return cls(weights=weights, **fields)


def _check_clip(frames: np.ndarray, audio: np.ndarray) -> None:
  if not (
    isinstance(frames, np.ndarray)
    and frames.dtype == np.uint8
    and frames.ndim == 4
    and frames.shape[1] == frames.shape[2]
    and frames.shape[3] == 3
  ):
    got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames)
    raise UserError(f"sync scoring needs uint8 frames [T, S, S, 3], got {got}")
  if len(frames) < WINDOW + MAX_OFFSET:
    raise UserError(
      f"sync scoring needs at least {WINDOW + MAX_OFFSET} frames "
      f"({(WINDOW + MAX_OFFSET) / FPS:.1f} s), got {len(frames)}"
    )
  if not isinstance(audio, np.ndarray) or audio.shape != (len(frames) * SAMPLES_PER_FRAME,):
    got = getattr(audio, "shape", type(audio))
    raise UserError(
      f"sync scoring needs {SAMPLES_PER_FRAME} audio samples per frame, "
      f"{len(frames) * SAMPLES_PER_FRAME} for {len(frames)} frames, got {got}"
    )


def _padded_starts(num_windows: int):
  """(EMBED_BATCH window starts, how many of them are real) covering 0..num_windows-1."""
  for first in range(0, num_windows, EMBED_BATCH):
    starts = np.arange(first, first + EMBED_BATCH)
    yield np.minimum(starts, num_windows - 1), min(EMBED_BATCH, num_windows - first)


def distance_per_offset(
  visual: np.ndarray, audio: np.ndarray, max_offset: int = MAX_OFFSET
) -> tuple[np.ndarray, np.ndarray]:
  """(offsets -max_offset..max_offset, mean distance per offset) between window embeddings.

  At offset d, visual window t pairs with audio window t - d (the video d frames late), averaged
  over the windows where both exist: a mean, so that small offsets are not favoured for
  overlapping more windows.
  """
  offsets = np.arange(-max_offset, max_offset + 1)
  count = len(visual)
  mean_distance = np.array(
    [
      np.linalg.norm(
        visual[max(d, 0) : count + min(d, 0)] - audio[max(-d, 0) : count - max(d, 0)], axis=-1
      ).mean()
      for d in offsets
    ]
  )
  return offsets, mean_distance


def scores_from_embeddings(visual: np.ndarray, audio: np.ndarray) -> dict:
  """LSE-D, LSE-C and offset (see the module docstring) of one video's window embeddings.

  Ties for the smallest distance go to the offset nearest 0, as in `metrics.sync_offset`.
  """
  offsets, mean_distance = distance_per_offset(visual, audio)
  best = min(range(len(offsets)), key=lambda i: (mean_distance[i], abs(offsets[i])))
  return {
    "lse_d": float(mean_distance[best]),
    "lse_c": float(np.median(mean_distance) - mean_distance[best]),
    "offset_frames": int(offsets[best]),
    "offsets": offsets.tolist(),
    "distance_per_offset": mean_distance.tolist(),
  }


def sync_scores(syncnet: SyncNet, frames: np.ndarray, audio: np.ndarray) -> dict:
  """{"lse_d", "lse_c", "offset_frames", "offsets", "distance_per_offset"} of one video.

  frames: uint8 `[T, S, S, 3]`, at least WINDOW + MAX_OFFSET of them; audio: float32 `[T * 640]`.
  """
  return scores_from_embeddings(*syncnet.embed(frames, audio))


def _read_meta(folder: Path) -> dict:
  """Every `SyncNet` argument but the weights, from syncnet.json, checked."""
  if not folder.is_dir():
    raise UserError(f"sync network folder {folder} does not exist; train one with {_TRAIN_COMMAND}")
  for name in (META_FILE, WEIGHTS_FILE):
    if not (folder / name).is_file():
      raise UserError(
        f"{folder} is not a sync network (no {name}); train one with {_TRAIN_COMMAND}"
      )
  try:
    meta = json.loads((folder / META_FILE).read_text())
    version = meta["format_version"]
    architecture = [
      meta[key] for key in ("window", "mouth_box", "crop_shape", "n_mels", "embed_dim")
    ]
    fields = {key: meta[key] for key in ("image_size", "training", "evaluation")}
  except (ValueError, KeyError, TypeError) as e:
    raise UserError(
      f"{folder / META_FILE} is corrupt ({type(e).__name__}: {e}); retrain the sync network"
    ) from None
  if version != FORMAT_VERSION:
    raise UserError(
      f"{folder} is sync network format {version}, this jaxtalk reads format {FORMAT_VERSION}; "
      "retrain it"
    )
  if architecture != [WINDOW, list(MOUTH_BOX), list(CROP_SHAPE), N_MELS, EMBED_DIM]:
    raise UserError(
      f"{folder} holds a sync network of another window, crop or embedding; retrain it with "
      f"{_TRAIN_COMMAND}"
    )
  return fields
