"""Trains the independent SynthTalk reader: frames -> every motion and identity parameter.

  python -m jaxtalk.eval.train_reader --data DIR --out DIR [--steps N] [--batch N] [--seed N]

It trains on random frames of random "train" clips, then measures Pearson and MAE per parameter
on every frame of the "eval" split (held-out identities and utterances), prints the table and
saves the reader to --out (each file appears only once complete). The same arguments give the
same reader.
"""

from __future__ import annotations

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
from jaxtalk.data.clips import Clip, read_clips, shard_paths
from jaxtalk.data.synthtalk.face import IDENTITY_PARAMS, SEED_PARAMS
from jaxtalk.data.synthtalk.motion import MOTION_PARAMS
from jaxtalk.errors import UserError
from jaxtalk.eval.instruments import instrument_optimizer
from jaxtalk.eval.reader import (
  Reader,
  box_downsample,
  clip_targets,
  format_accuracy,
  held_out_accuracy,
  init_weights,
  reader_net,
  unit_pixels,
)

# Half of the training frames get their colour channels shuffled and rescaled: what a face does
# must be read the same whatever its colours, and 150 training identities cover few colour
# combinations. Those frames' identity targets no longer hold, so they teach motion only.
_RECOLOURED_SHARE, _CHANNEL_GAIN = 0.5, 0.3
# Then every frame gets a little brightness and contrast jitter, so that no reading depends on
# exact pixel values. Random shifts made every reading worse (the still body is the reference
# for head pose).
_BRIGHTNESS, _CONTRAST = 0.03, 0.05
# Motion is what the evaluation reads; at equal weight the 27 identity targets take most of the
# network (mouth width, blink and brow read worse).
_IDENTITY_WEIGHT = 0.25
# Seed parameters are pure noise to a reader: left out of the loss, they cannot drown the rest.
_READ_IDENTITY = np.array([name not in SEED_PARAMS for name in IDENTITY_PARAMS], np.float32)
PROGRESS_EVERY = 100


@dataclasses.dataclass(frozen=True)
class FramePool:
  """Every frame of a split's clips, with its ground truth, to draw training batches from."""

  frames: np.ndarray  # [F, S, S, 3] uint8
  targets: np.ndarray  # [F, P] float32
  starts: np.ndarray  # [C] index of each clip's first frame
  lengths: np.ndarray  # [C] frames of each clip

  @property
  def image_size(self) -> int:
    return self.frames.shape[1]

  def sample(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` random frames of random clips, and their targets."""
    clip = rng.integers(len(self.starts), size=count)
    index = self.starts[clip] + rng.integers(self.lengths[clip])
    return self.frames[index], self.targets[index]


def _has_labels(clip: Clip) -> bool:
  return (
    clip.motion is not None
    and clip.identity is not None
    and clip.motion.shape[1] == len(MOTION_PARAMS)
    and clip.identity.shape == (len(IDENTITY_PARAMS),)
  )


def labelled_clips(data_dir: str, split: str) -> list[Clip]:
  """Every clip of a split, checked to be SynthTalk clips of one image size with full labels."""
  clips = list(read_clips(shard_paths(data_dir, split)))
  for clip in clips:
    if not _has_labels(clip):
      raise UserError(
        f"clip {clip.meta.get('clip_id', '?')} in {data_dir} lacks SynthTalk's motion and "
        f"identity parameters; the reader trains on SynthTalk clips "
        f"(python -m jaxtalk.data.synthtalk --out DIR)"
      )
  sizes = sorted({clip.frames.shape[1] for clip in clips})
  if len(sizes) > 1:
    raise UserError(f"the {split} clips in {data_dir} mix image sizes {sizes}; use one size")
  return clips


def frame_pool(clips: list[Clip], image_size: int) -> FramePool:
  """The clips' frames box-averaged down to `image_size` (a whole fraction of theirs)."""
  lengths = np.array([len(clip.frames) for clip in clips])
  return FramePool(
    frames=np.concatenate([box_downsample(clip.frames, image_size) for clip in clips]),
    targets=np.concatenate([clip_targets(clip) for clip in clips]),
    starts=np.cumsum(lengths) - lengths,
    lengths=lengths,
  )


def _recolour(pixels, key):
  """(frames, [B] bool whether each was recoloured): channels permuted, then scaled."""
  choose_key, permute_key, gain_key = jax.random.split(key, 3)
  count = len(pixels)
  recoloured = jax.random.bernoulli(choose_key, _RECOLOURED_SHARE, (count,))
  order = jax.vmap(lambda k: jax.random.permutation(k, 3))(jax.random.split(permute_key, count))
  gains = jax.random.uniform(
    gain_key, (count, 1, 1, 3), minval=1.0 - _CHANNEL_GAIN, maxval=1.0 + _CHANNEL_GAIN
  )
  shuffled = jnp.take_along_axis(pixels, order[:, None, None, :], axis=3)
  changed = jnp.clip(shuffled * gains, 0.0, 1.0)
  return jnp.where(recoloured[:, None, None, None], changed, pixels), recoloured


def _jitter(pixels, key):
  """Per-frame brightness and contrast, on frames in [0, 1]."""
  brightness_key, contrast_key = jax.random.split(key)
  per_frame = (len(pixels), 1, 1, 1)
  brightness = jax.random.uniform(
    brightness_key, per_frame, minval=-_BRIGHTNESS, maxval=_BRIGHTNESS
  )
  contrast = 1.0 + jax.random.uniform(contrast_key, per_frame, minval=-_CONTRAST, maxval=_CONTRAST)
  mean = pixels.mean(axis=(1, 2, 3), keepdims=True)
  return jnp.clip((pixels - mean) * contrast + mean + brightness, 0.0, 1.0)


def _augment(pixels, key):
  """(augmented frames, loss weights `[B, P]`): recoloured frames keep only their motion targets."""
  recolour_key, jitter_key = jax.random.split(key)
  pixels, recoloured = _recolour(pixels, recolour_key)
  identity_weight = jnp.where(recoloured, 0.0, _IDENTITY_WEIGHT)[:, None] * _READ_IDENTITY
  weights = jnp.concatenate([jnp.ones((len(pixels), len(MOTION_PARAMS))), identity_weight], axis=1)
  return _jitter(pixels, jitter_key), weights


def _train_step(optimizer):
  """The jitted step: (weights, opt_state, frames, normalised targets, key) -> same + loss."""
  net = reader_net()

  def loss_fn(weights, pixels, targets, loss_weights, dropout_key):
    read = net.apply({"params": weights}, pixels, train=True, rngs={"dropout": dropout_key})
    return jnp.mean(loss_weights * jnp.square(read - targets))

  def step(weights, opt_state, frames, targets, key):
    augment_key, dropout_key = jax.random.split(key)
    pixels, loss_weights = _augment(unit_pixels(frames), augment_key)
    loss, grads = jax.value_and_grad(loss_fn)(weights, pixels, targets, loss_weights, dropout_key)
    updates, opt_state = optimizer.update(grads, opt_state, weights)
    return optax.apply_updates(weights, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1))


def train_reader(
  data_dir: str,
  *,
  steps: int,
  batch: int,
  seed: int = 0,
  image_size: int | None = None,
  progress: Callable[[int, float], None] | None = None,
) -> Reader:
  """A Reader trained on `data_dir`'s train split, with its accuracy on the eval split.

  It reads at `image_size` (default: the clips' own size), which must divide the clips' size:
  larger frames are box-averaged down to it. `progress(steps_done, loss)` is called every
  PROGRESS_EVERY steps.
  """
  start = time.perf_counter()
  train_clips = labelled_clips(data_dir, "train")
  held_out = labelled_clips(data_dir, "eval")
  data_size = train_clips[0].frames.shape[1]
  if held_out[0].frames.shape[1] != data_size:
    raise UserError(f"the eval clips in {data_dir} are not {data_size} px like the train clips")
  image_size = image_size or data_size
  if image_size % 2 or data_size % image_size:
    raise UserError(
      f"the reader reads an even image size that divides the clips' {data_size} px; "
      f"got {image_size} px"
    )
  pool = frame_pool(train_clips, image_size)
  del train_clips
  mean, std = pool.targets.mean(axis=0), pool.targets.std(axis=0)
  std = np.where(std > 0, std, 1.0)  # a parameter constant in training is read as that constant
  key = jax.random.key(seed)
  init_key, step_key = jax.random.split(key)
  weights = init_weights(pool.image_size, init_key)
  optimizer = instrument_optimizer(steps)
  opt_state = optimizer.init(weights)
  step = _train_step(optimizer)
  rng = np.random.default_rng(seed)
  for index in range(steps):
    frames, targets = pool.sample(rng, batch)
    weights, opt_state, loss = step(
      weights, opt_state, frames, (targets - mean) / std, jax.random.fold_in(step_key, index)
    )
    if progress and (index + 1) % PROGRESS_EVERY == 0:
      progress(index + 1, float(loss))
  reader = Reader(image_size=pool.image_size, weights=weights, mean=mean, std=std)
  reader.accuracy = held_out_accuracy(reader, held_out)
  reader.training = {
    "steps": steps,
    "batch": batch,
    "seed": seed,
    "train_clips": len(pool.starts),
    "train_frames": len(pool.frames),
    "eval_clips": len(held_out),
    "eval_frames": sum(len(clip.frames) for clip in held_out),
    "seconds": round(time.perf_counter() - start, 1),
  }
  return reader


def main(argv: list[str] | None = None) -> int:
  parser = argument_parser("python -m jaxtalk.eval.train_reader", __doc__)
  parser.add_argument("--data", required=True, help="SynthTalk folder with train and eval shards")
  parser.add_argument("--out", required=True, help="folder to save the reader to")
  parser.add_argument("--steps", type=int, default=8000, help="training steps")
  parser.add_argument("--batch", type=int, default=64, help="frames per training step")
  parser.add_argument("--seed", type=int, default=0, help="initialisation and sampling seed")
  parser.add_argument(
    "--image-size",
    type=int,
    default=None,
    help="size the reader reads at, dividing the clips' (larger frames are box-averaged down)",
  )
  return run_command(_train_command, parser.parse_args(argv))


def _train_command(args) -> None:
  if args.steps < 1 or args.batch < 1 or args.seed < 0:
    raise UserError("--steps and --batch must be at least 1, --seed at least 0")
  for split in ("train", "eval"):
    shard_paths(args.data, split)

  with tqdm(total=args.steps, unit="step", desc="training the reader", file=sys.stderr) as bar:

    def progress(done: int, loss: float) -> None:
      bar.update(done - bar.n)
      bar.set_postfix(loss=f"{loss:.4f}")

    reader = train_reader(
      args.data,
      steps=args.steps,
      batch=args.batch,
      seed=args.seed,
      image_size=args.image_size,
      progress=progress,
    )
  info = reader.training
  print(
    f"held-out accuracy of the reader ({info['eval_clips']} eval clips, {info['eval_frames']} "
    f"frames; trained {info['steps']} steps of {info['batch']} frames in {info['seconds']:.0f} s)"
  )
  print(format_accuracy(reader.accuracy))
  print(f"saved {reader.save(args.out)}")


if __name__ == "__main__":
  sys.exit(main())
