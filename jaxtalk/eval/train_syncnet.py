"""Trains the independent sync network on any clip shards: mouth windows <-> audio windows.

  python -m jaxtalk.eval.train_syncnet --data DIR --out DIR [--steps N] [--batch N] [--seed N]

Contrastive training on random windows of the "train" clips (SynthTalk or ingested real video):
each visual window must pick its own audio window out of the batch's other audio windows (other
clips) and out of `HARD_NEGATIVES` windows of its own clip's audio shifted by 2 to MAX_OFFSET
frames. The in-batch negatives could be told apart by who speaks and what is said; the shifted
ones cannot, so the network has to learn when the mouth moves. Then it measures, on the "eval"
clips, the offset it finds in ground-truth clips and in clips whose video was shifted by k frames,
and LSE-D / LSE-C with the true audio and with another clip's, prints the table and saves the
network to --out (each file appears only once complete). The same arguments give the same network.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from jaxtalk.cli import argument_parser, run_command
from jaxtalk.data.clips import read_clips, shard_paths
from jaxtalk.errors import UserError
from jaxtalk.eval.instruments import instrument_optimizer
from jaxtalk.eval.syncnet import (
  MAX_OFFSET,
  WINDOW,
  SyncNet,
  audio_mels,
  embed_crops,
  embed_mels,
  init_weights,
  mouth_crops,
  offset_clip,
  scores_from_embeddings,
  window_index,
)
from jaxtalk.timebase import FPS, SAMPLES_PER_FRAME

HARD_NEGATIVES = 8
# Shifts of one frame are left out of the hard negatives: the mouth barely changes in 40 ms, so
# they would mostly teach the towers to tell apart near-identical pairs.
MIN_HARD_SHIFT = 2
# Every clip used must hold a window and all its shifts up to MAX_OFFSET on one side at least.
MIN_CLIP_FRAMES = WINDOW + 2 * MAX_OFFSET
TEMPERATURE = 0.1  # on cosine similarity: unit embeddings make logits lie in [-10, 10]
_BRIGHTNESS, _CONTRAST, _NOISE = 0.05, 0.1, 0.01
EVAL_SHIFTS = (-10, -5, -2, -1, 0, 1, 2, 5, 10)
PROGRESS_EVERY = 100


@dataclasses.dataclass(frozen=True)
class MouthClip:
  """What the sync network sees of a clip: its mouth crops and its audio."""

  crops: np.ndarray  # [T, *CROP_SHAPE, 3] uint8
  audio: np.ndarray  # [T * SAMPLES_PER_FRAME] float32
  source: str


@dataclasses.dataclass(frozen=True)
class WindowPool:
  """Every mouth crop and log-mel frame of a split's clips, end to end, to draw windows from."""

  crops: np.ndarray  # [F, *CROP_SHAPE, 3] uint8
  mels: np.ndarray  # [F * MELS_PER_FRAME, N_MELS] float32
  starts: np.ndarray  # [C] each clip's first frame
  windows: np.ndarray  # [C] windows in each clip (its frames - WINDOW + 1)

  def sample(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(`count` crop windows, their audio windows `[count, 1 + HARD_NEGATIVES, ...]`).

    Audio window 0 is the one in sync; the others are the same clip's audio shifted by
    MIN_HARD_SHIFT..MAX_OFFSET frames either way (reflected into the clip at its ends).
    """
    clip = rng.integers(len(self.starts), size=count)
    first = rng.integers(self.windows[clip])[:, None]
    shift = rng.integers(MIN_HARD_SHIFT, MAX_OFFSET + 1, size=(count, HARD_NEGATIVES))
    shift *= rng.choice(np.array([-1, 1]), size=shift.shape)
    heard = first + shift
    heard = np.where((heard < 0) | (heard >= self.windows[clip][:, None]), first - shift, heard)
    clip_start = self.starts[clip][:, None]
    frame_index, _ = window_index(clip_start[:, 0] + first[:, 0])
    _, mel_index = window_index(clip_start + np.concatenate([first, heard], axis=1))
    return self.crops[frame_index], self.mels[mel_index]


def mouth_clips(data_dir: str, split: str) -> tuple[list[MouthClip], dict]:
  """The mouths and audio of a split's clips long enough to score, and what was read.

  Frames are cut to their mouth crops as they are read, so a split of large frames never has
  to fit in memory. Raises UserError if no clip is long enough or the clips mix image sizes.
  """
  clips, sizes, short = [], set(), 0
  for clip in read_clips(shard_paths(data_dir, split)):
    if len(clip.frames) < MIN_CLIP_FRAMES:
      short += 1
      continue
    sizes.add(clip.frames.shape[1])
    clips.append(MouthClip(mouth_crops(clip.frames), clip.audio, clip.meta.get("source", "?")))
  if not clips:
    raise UserError(
      f"no {split} clip in {data_dir} is at least {MIN_CLIP_FRAMES / FPS:.1f} s long "
      f"({MIN_CLIP_FRAMES} frames), which sync training and scoring need"
    )
  if len(sizes) > 1:
    raise UserError(
      f"the {split} clips in {data_dir} mix image sizes {sorted(sizes)}; use one size"
    )
  description = {
    "clips": len(clips),
    "frames": sum(len(clip.crops) for clip in clips),
    "short_clips_left_out": short,
    "sources": dict(collections.Counter(clip.source for clip in clips)),
    "image_size": sizes.pop(),
  }
  return clips, description


def window_pool(clips: list[MouthClip]) -> WindowPool:
  lengths = np.array([len(clip.crops) for clip in clips])
  return WindowPool(
    crops=np.concatenate([clip.crops for clip in clips]),
    mels=np.concatenate([audio_mels(clip.audio) for clip in clips]),
    starts=np.cumsum(lengths) - lengths,
    windows=lengths - WINDOW + 1,
  )


def _jitter(crop_windows, key):
  """Per-window brightness, contrast and pixel noise on uint8 crops -> still in [0, 255].

  The same for every frame of a window, so the jitter never looks like motion.
  """
  brightness_key, contrast_key, noise_key = jax.random.split(key, 3)
  per_window = (len(crop_windows), 1, 1, 1, 1)
  brightness = 255.0 * jax.random.uniform(
    brightness_key, per_window, minval=-_BRIGHTNESS, maxval=_BRIGHTNESS
  )
  contrast = 1.0 + jax.random.uniform(contrast_key, per_window, minval=-_CONTRAST, maxval=_CONTRAST)
  noise = 255.0 * _NOISE * jax.random.normal(noise_key, crop_windows.shape)
  pixels = crop_windows.astype(jnp.float32)
  mean = pixels.mean(axis=(1, 2, 3, 4), keepdims=True)
  return jnp.clip((pixels - mean) * contrast + mean + brightness + noise, 0.0, 255.0)


def contrastive_loss(visual: jax.Array, heard: jax.Array) -> jax.Array:
  """InfoNCE of visual `[B, D]` against audio `[B, 1 + HARD_NEGATIVES, D]` embeddings.

  Each visual window's candidates are every in-sync audio window of the batch plus its own
  shifted ones; each in-sync audio window's are the batch's visual windows.
  """
  labels = jnp.arange(len(visual))
  in_batch = visual @ heard[:, 0].T
  shifted = jnp.einsum("bd,bkd->bk", visual, heard[:, 1:])
  video_to_audio = jnp.concatenate([in_batch, shifted], axis=1) / TEMPERATURE
  cross_entropy = optax.softmax_cross_entropy_with_integer_labels
  return 0.5 * (
    cross_entropy(video_to_audio, labels).mean()
    + cross_entropy(in_batch.T / TEMPERATURE, labels).mean()
  )


def _train_step(optimizer):
  """The jitted step: (weights, opt_state, crop windows, mel windows, key) -> same + loss."""

  def loss_fn(weights, crop_windows, mel_windows):
    visual = embed_crops(weights, crop_windows)
    heard = embed_mels(weights, mel_windows.reshape(-1, *mel_windows.shape[2:]))
    return contrastive_loss(visual, heard.reshape(*mel_windows.shape[:2], -1))

  def step(weights, opt_state, crop_windows, mel_windows, key):
    loss, grads = jax.value_and_grad(loss_fn)(weights, _jitter(crop_windows, key), mel_windows)
    updates, opt_state = optimizer.update(grads, opt_state, weights)
    return optax.apply_updates(weights, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1))


def train_syncnet(
  data_dir: str,
  *,
  steps: int,
  batch: int,
  seed: int = 0,
  progress: Callable[[int, float], None] | None = None,
) -> SyncNet:
  """A SyncNet trained on `data_dir`'s train split, with its scores on the eval split.

  `progress(steps_done, loss)` is called every PROGRESS_EVERY steps.
  """
  start = time.perf_counter()
  train_clips, train_description = mouth_clips(data_dir, "train")
  held_out, eval_description = mouth_clips(data_dir, "eval")
  if len(held_out) < 2:
    raise UserError(f"the eval split of {data_dir} needs at least 2 clips to score shuffled audio")
  pool = window_pool(train_clips)
  del train_clips  # the pool holds its own copy of every crop
  init_key, jitter_key = jax.random.split(jax.random.key(seed))
  weights = init_weights(init_key)
  optimizer = instrument_optimizer(steps)
  opt_state = optimizer.init(weights)
  step = _train_step(optimizer)
  rng = np.random.default_rng(seed)
  for index in range(steps):
    crop_windows, mel_windows = pool.sample(rng, batch)
    weights, opt_state, loss = step(
      weights, opt_state, crop_windows, mel_windows, jax.random.fold_in(jitter_key, index)
    )
    if progress and (index + 1) % PROGRESS_EVERY == 0:
      progress(index + 1, float(loss))
  train_seconds = time.perf_counter() - start
  syncnet = SyncNet(weights=weights, image_size=train_description.pop("image_size"))
  syncnet.evaluation = held_out_evaluation(syncnet, held_out)
  eval_description.pop("image_size")
  syncnet.training = {
    "data": data_dir,
    "train_split": train_description,
    "eval_split": eval_description,
    "steps": steps,
    "batch": batch,
    "hard_negatives": HARD_NEGATIVES,
    "seed": seed,
    "train_seconds": round(train_seconds, 1),
  }
  return syncnet


def _scores(syncnet: SyncNet, crops: np.ndarray, audio: np.ndarray) -> dict:
  return scores_from_embeddings(*syncnet.embed_mouths(crops, audio))


def _shuffled_pair(clip: MouthClip, other: MouthClip) -> tuple[np.ndarray, np.ndarray]:
  """`clip`'s mouths with `other`'s audio, both cut to the shorter of the two."""
  frames = min(len(clip.crops), len(other.crops))
  return clip.crops[:frames], other.audio[: frames * SAMPLES_PER_FRAME]


def held_out_evaluation(syncnet: SyncNet, clips: list[MouthClip]) -> dict:
  """The offsets found for every EVAL_SHIFTS shift of every clip, and mean LSE-D / LSE-C with the
  true audio and with the next clip's (shuffled)."""
  shifts = {}
  for shift in EVAL_SHIFTS:
    found = np.array(
      [_scores(syncnet, *offset_clip(c.crops, c.audio, shift))["offset_frames"] for c in clips]
    )
    shifts[str(shift)] = {
      "exact": float(np.mean(found == shift)),
      "within_1": float(np.mean(np.abs(found - shift) <= 1)),
      "mean_found": float(found.mean()),
    }
  true = [_scores(syncnet, clip.crops, clip.audio) for clip in clips]
  shuffled = [
    _scores(syncnet, *_shuffled_pair(clip, other))
    for clip, other in zip(clips, clips[1:] + clips[:1])
  ]
  mean_of = lambda scores, key: float(np.mean([s[key] for s in scores]))
  return {
    "clips": len(clips),
    "shifts": shifts,
    "true_audio": {key: mean_of(true, key) for key in ("lse_d", "lse_c")},
    "shuffled_audio": {key: mean_of(shuffled, key) for key in ("lse_d", "lse_c")},
  }


def format_evaluation(evaluation: dict) -> str:
  """The held-out evaluation as a plain-text table."""
  lines = [f"{'video shifted by':<18}{'found exactly':>14}{'within 1':>10}{'mean found':>12}"]
  for shift, row in evaluation["shifts"].items():
    label = f"{int(shift):+d} frames"
    lines.append(
      f"{label:<18}{row['exact']:>14.0%}{row['within_1']:>10.0%}{row['mean_found']:>+12.2f}"
    )
  lines.append(f"{'audio':<18}{'LSE-D':>14}{'LSE-C':>10}")
  for name in ("true_audio", "shuffled_audio"):
    row = evaluation[name]
    lines.append(f"{name.replace('_', ' '):<18}{row['lse_d']:>14.3f}{row['lse_c']:>10.3f}")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argument_parser("python -m jaxtalk.eval.train_syncnet", __doc__)
  parser.add_argument("--data", required=True, help="folder with train and eval clip shards")
  parser.add_argument("--out", required=True, help="folder to save the sync network to")
  parser.add_argument("--steps", type=int, default=1200, help="training steps")
  parser.add_argument("--batch", type=int, default=64, help="windows per training step")
  parser.add_argument("--seed", type=int, default=0, help="initialisation and sampling seed")
  return run_command(_train_command, parser.parse_args(argv))


def _train_command(args) -> None:
  if args.steps < 1 or args.batch < 2 or args.seed < 0:
    raise UserError("--steps must be at least 1, --batch at least 2, --seed at least 0")
  for split in ("train", "eval"):
    shard_paths(args.data, split)

  with tqdm(
    total=args.steps, unit="step", desc="training the sync network", file=sys.stderr
  ) as bar:

    def progress(done: int, loss: float) -> None:
      bar.update(done - bar.n)
      bar.set_postfix(loss=f"{loss:.4f}")

    syncnet = train_syncnet(
      args.data, steps=args.steps, batch=args.batch, seed=args.seed, progress=progress
    )
  info = syncnet.training
  print(
    f"held-out sync of the network ({syncnet.evaluation['clips']} eval clips; trained "
    f"{info['steps']} steps of {info['batch']} windows in {info['train_seconds']:.0f} s)"
  )
  print(format_evaluation(syncnet.evaluation))
  print(f"saved {syncnet.save(args.out)}")


if __name__ == "__main__":
  sys.exit(main())
