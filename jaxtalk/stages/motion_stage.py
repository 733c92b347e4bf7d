"""Stage 2: the diffusion-forcing motion transformer (and the audio encoder), on frozen latents.

The motion encoder trained in stage 1 turns every frame of the training clips into a motion latent,
once per training data and stage-1 checkpoint (encoding the frames of every window at every step
would cost several times the step itself), kept in a cache on disk that restarts reuse
(`jaxtalk.data.latent_cache`); batches then carry latents instead of frames. Each frame gets its own
independently drawn flow time (diffusion forcing) and the transformer learns its velocity,
conditioned on the audio, on the latent of a reference frame and on each frame's acting controls
(`jaxtalk.data.acting`). A fraction of examples loses its audio, and each group of acting controls
(emotion, pose amplitude, blink rate) is dropped on its own: the model learns both to follow a
control and to decide it from the audio, and classifier-free guidance needs both at sampling time.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
from collections.abc import Iterable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.data import latent_cache
from jaxtalk.data.acting import ActingLayout
from jaxtalk.data.clips import read_clips
from jaxtalk.data.latent_cache import LatentCache
from jaxtalk.diffusion import flow
from jaxtalk.models.audio.pretrained.features import BACKBONE
from jaxtalk.models.audio.pretrained.importer import import_backbone
from jaxtalk.models.factory import Models
from jaxtalk.stages.renderer_stage import RendererStage
from jaxtalk.stages.stage import Stage
from jaxtalk.training.checkpoint import load_params
from jaxtalk.training.settings import TrainSettings


def encode_clips(
  models: Models, encoder_params, clip_frames: Iterable[np.ndarray], batch_frames: int = 256
) -> Iterator[np.ndarray]:
  """The motion latents [T, latent_dim] of each clip's frames [T, S, S, 3], in order.

  Frames of consecutive clips share batches of one compiled shape, so short clips waste no
  padding; a clip's latents are yielded as soon as its last frame is encoded.
  """
  encode = jax.jit(lambda frames: models.encode_motion(encoder_params, frames))
  lengths = collections.deque()  # of the clips not yet yielded
  pending, encoded = None, None  # frames not yet encoded, latents not yet yielded

  def run(frames):
    padded = np.concatenate(
      [frames, np.zeros((batch_frames - len(frames),) + frames.shape[1:], frames.dtype)]
    )
    latents = np.asarray(encode(padded))[: len(frames)]
    return latents if encoded is None else np.concatenate([encoded, latents])

  def finished():
    nonlocal encoded
    while lengths and len(encoded) >= lengths[0]:
      n = lengths.popleft()
      yield encoded[:n]
      encoded = encoded[n:]

  for frames in clip_frames:
    lengths.append(len(frames))
    pending = frames if pending is None else np.concatenate([pending, frames])
    while len(pending) >= batch_frames:
      encoded = run(pending[:batch_frames])
      pending = pending[batch_frames:]
      yield from finished()
  if pending is not None and len(pending):
    encoded = run(pending)
    yield from finished()


def latent_table(
  models: Models, encoder_params, encoder_config: dict, paths, cache_root
) -> LatentCache:
  """The latents of every clip in `paths` (index = clip_index), from the cache under
  `cache_root`, which the processes first fill together if it lacks these clips and this encoder
  (`encoder_params`, and `encoder_config`: what else decides its output)."""
  inputs = latent_cache.key_inputs(paths, encoder_params, encoder_config)

  def encode(index, count):
    # Only this process's share is read and decoded: the others decode theirs.
    frames = (clip.frames for clip in read_clips(paths, share=(index, count)))
    return encode_clips(models, encoder_params, frames)

  return latent_cache.open_or_build(cache_root, inputs, encode)


def drop_acting(acting, layout: ActingLayout, rate: float, all_rate: float, rng):
  """`acting` [B, T, A] with each example's emotion, pose and blink groups zeroed (not given),
  each with probability `rate`, independently, and all of them with probability `all_rate`.

  Without `all_rate`, every control on auto at once (what sampling does by default) would be
  rare, `rate` cubed: at 0.3, 2.7% of examples; a demo model trained so drifted into faces it
  cannot draw within seconds of all-auto sampling, while any one control given held it."""
  groups = (layout.emotion_group, layout.pose_group, layout.blink_group)
  group_rng, all_rng = jax.random.split(rng)
  drop = jax.random.uniform(group_rng, (acting.shape[0], len(groups))) < rate
  drop = drop | (jax.random.uniform(all_rng, (acting.shape[0], 1)) < all_rate)
  masks = jnp.stack([jnp.asarray(layout.group_mask(g)) for g in groups])  # [groups, A]
  dropped = jnp.clip(drop.astype(acting.dtype) @ masks, 0.0, 1.0)  # [B, A]
  return acting * (1.0 - dropped)[:, None, :]


def with_latents(table, window_frames: int):
  """Batch transform: frames -> their precomputed latents, reference frame -> its latent."""

  def transform(batch):
    index, start, ref = batch["clip_index"], batch["start"], batch["reference_index"]
    return {
      "latents": np.stack([table[c][s : s + window_frames] for c, s in zip(index, start)]),
      "reference_latent": np.stack([table[c][r] for c, r in zip(index, ref)]),
      "audio": batch["audio"],
      "acting": batch["acting"],
    }

  return transform


@dataclasses.dataclass(frozen=True)
class MotionSettings(TrainSettings):
  window_frames: int
  audio_dropout: float
  acting_dropout: float
  acting_all_dropout: float
  latent_cache_dir: str


class MotionStage(Stage):
  name = "motion"
  trains = ("audio_encoder", "motion")
  settings_type = MotionSettings
  data_seed_offset = 1

  def init(self, rng):
    params = super().init(rng)
    if self.config.audio.encoder == "mel":
      return params
    # The imported weights replace the random ones, keeping their logical-axis boxes.
    params["audio_encoder"][BACKBONE] = jax.tree.map(
      lambda box, value: box.replace_boxed(jnp.asarray(value)),
      params["audio_encoder"][BACKBONE],
      self._pretrained_backbone,
      is_leaf=lambda x: isinstance(x, nn.Partitioned),
    )
    return params

  @functools.cached_property
  def _pretrained_backbone(self) -> dict:
    return import_backbone(self.config.audio)

  def loss(self, params, batch, rng):
    audio_encoder, motion = self.models.audio_encoder, self.models.motion
    latents, reference = batch["latents"], batch["reference_latent"]
    features = audio_encoder.apply({"params": params["audio_encoder"]}, batch["audio"])
    time_rng, noise_rng, drop_rng, acting_rng = jax.random.split(rng, 4)
    t = jax.random.uniform(time_rng, latents.shape[:2])  # one flow time per frame
    noise = jax.random.normal(noise_rng, latents.shape)
    keep = jax.random.uniform(drop_rng, latents.shape[:1]) >= self.settings.audio_dropout
    velocity, _ = motion.apply(
      {"params": params["motion"]},
      flow.interpolate(latents, noise, t),
      t,
      features,
      audio_keep=keep,
      acting=drop_acting(
        batch["acting"],
        motion.acting_layout,
        self.settings.acting_dropout,
        self.settings.acting_all_dropout,
        acting_rng,
      ),
      reference=reference,
      audio_offset=-self.models.audio_margin_frames,
    )
    value = flow.flow_matching_loss(velocity, latents, noise)
    return value, {"flow_loss": value}

  def is_frozen(self, path):
    return path[0] == "audio_encoder" and self.models.audio_encoder.is_frozen(path[1:])

  def dataset(self, run_dir, shard_index, shard_count):
    """Windows of latents from the frozen EMA motion encoder of stage 1 in the same `run_dir`."""
    stage1 = RendererStage(self.config)
    encoder_params = load_params(
      stage1.checkpoint_dir(run_dir), self.models.abstract_params(("motion_encoder",))
    )["motion_encoder"]
    paths = self.train_paths()
    encoder_config = {
      **self.config.motion_encoder.to_dict(),
      "compute_dtype": self.config.compute_dtype,
    }
    cache_root = self.settings.latent_cache_dir or os.path.join(
      self.config.data.train_dir, "latents"
    )
    table = latent_table(self.models, encoder_params, encoder_config, paths, cache_root)
    frames = self.settings.window_frames
    # Its windows need no frames: the latents above stand in for them.
    windows = self.windows(
      frames,
      self.models.audio_margin_frames,
      shard_index,
      shard_count,
      with_frames=False,
      acting=self.models.motion.acting_layout,
    )
    return windows.map(with_latents(table, frames))
