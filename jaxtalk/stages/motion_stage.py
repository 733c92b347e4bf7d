"""Stage 2: the diffusion-forcing motion transformer (and the audio encoder), on frozen latents.

The motion encoder trained in stage 1 turns every frame of the training clips into a motion latent,
once, before training (encoding the frames of every window at every step would cost several times
the step itself); batches then carry latents instead of frames. Each frame gets its own independently drawn flow time (diffusion forcing) and the transformer
learns its velocity, conditioned on the audio and on the latent of a reference frame. A fraction
of examples loses its audio, which classifier-free guidance needs at sampling time.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.audio import encoder as audio_encoders
from jaxtalk.audio.encoder import make_audio_encoder
from jaxtalk.data.clips import read_clips
from jaxtalk.data.pipeline import window_dataset
from jaxtalk.diffusion import flow
from jaxtalk.models import build
from jaxtalk.stages import renderer_stage
from jaxtalk.stages.common import image_to_model, run_stage, stage_dir, train_paths
from jaxtalk.training.checkpoint import load_params
from jaxtalk.training.progress import say


def audio_margin_frames(config) -> int:
  """Audio context beyond each end of a window: what the cross-attention window plus the audio
  encoder's receptive field (or a pretrained one's context) reach, so frames at the window edge
  hear what they would mid-clip."""
  return config.motion.audio_radius + audio_encoders.margin_frames(config.audio, config.data)


def encode_frames(encoder, encoder_params, frames):
  """uint8 frames [..., H, W, 3] -> flat motion latents [..., latent_dim]."""
  lead = frames.shape[:-3]
  images = image_to_model(frames).reshape((-1,) + frames.shape[-3:])
  tokens = encoder.apply({"params": encoder_params}, images)
  return tokens.reshape(lead + (-1,))


def encode_clips(config, encoder_params, paths, batch_frames: int = 256) -> list[np.ndarray]:
  """Motion latents [T, latent_dim] of every clip in `paths`, in record order (= clip_index).

  Frames of consecutive clips share batches of one compiled shape, so short clips waste no
  padding. Held in host memory: 4 bytes x latent_dim per frame, ~13 MB per 100k demo frames.
  """
  encoder = build.motion_encoder(config)
  encode = jax.jit(lambda frames: encode_frames(encoder, encoder_params, frames))
  lengths, latents, pending = [], [], []

  def flush(frames):
    padded = np.concatenate(
      [frames, np.zeros((batch_frames - len(frames),) + frames.shape[1:], frames.dtype)]
    )
    latents.append(np.asarray(encode(padded))[: len(frames)])

  for clip in read_clips(paths):
    lengths.append(len(clip.frames))
    pending.append(clip.frames)
    stream = np.concatenate(pending)
    while len(stream) >= batch_frames:
      flush(stream[:batch_frames])
      stream = stream[batch_frames:]
    pending = [stream]
  if pending and len(pending[0]):
    flush(pending[0])
  return np.split(np.concatenate(latents), np.cumsum(lengths)[:-1])


def with_latents(table, window_frames: int):
  """Batch transform: frames -> their precomputed latents, reference frame -> its latent."""

  def transform(batch):
    index, start, ref = batch["clip_index"], batch["start"], batch["reference_index"]
    return {
      "latents": np.stack([table[c][s : s + window_frames] for c, s in zip(index, start)]),
      "reference_latent": np.stack([table[c][r] for c, r in zip(index, ref)]),
      "audio": batch["audio"],
    }

  return transform


def init_fn(config, pretrained_audio=None):
  """rng -> fresh params; `pretrained_audio` (imported backbone weights) replaces the random ones."""
  audio_encoder, motion = (
    make_audio_encoder(config.audio, config.data),
    build.motion_transformer(config),
  )
  frames, margin = config.motion_train.window_frames, audio_margin_frames(config)
  spf = config.data.sample_rate // config.data.fps

  def init(rng):
    audio_rng, motion_rng = jax.random.split(rng)
    waveform = jnp.zeros((1, (frames + 2 * margin) * spf))
    audio_params = audio_encoder.init(audio_rng, waveform)["params"]
    if pretrained_audio is not None:
      backbone = audio_encoders.BACKBONE
      audio_params[backbone] = jax.tree.map(
        lambda box, value: box.replace_boxed(jnp.asarray(value)),
        audio_params[backbone],
        pretrained_audio,
        is_leaf=lambda x: isinstance(x, nn.Partitioned),
      )
    features = jnp.zeros((1, frames + 2 * margin, config.audio.dim))
    latents = jnp.zeros((1, frames, motion.latent_dim))
    motion_params = motion.init(
      motion_rng,
      latents,
      jnp.zeros((1, frames)),
      features,
      reference=jnp.zeros((1, motion.latent_dim)),
      audio_offset=-margin,
    )["params"]
    return {"audio_encoder": audio_params, "motion": motion_params}

  return init


def loss_fn(config):
  audio_encoder, motion = (
    make_audio_encoder(config.audio, config.data),
    build.motion_transformer(config),
  )
  train_cfg, margin = config.motion_train, audio_margin_frames(config)

  def loss(params, batch, rng):
    latents, reference = batch["latents"], batch["reference_latent"]
    features = audio_encoder.apply({"params": params["audio_encoder"]}, batch["audio"])
    time_rng, noise_rng, drop_rng = jax.random.split(rng, 3)
    t = jax.random.uniform(time_rng, latents.shape[:2])  # one flow time per frame
    noise = jax.random.normal(noise_rng, latents.shape)
    keep = jax.random.uniform(drop_rng, latents.shape[:1]) >= train_cfg.audio_dropout
    velocity, _ = motion.apply(
      {"params": params["motion"]},
      flow.interpolate(latents, noise, t),
      t,
      features,
      audio_keep=keep,
      reference=reference,
      audio_offset=-margin,
    )
    value = flow.flow_matching_loss(velocity, latents, noise)
    return value, {"flow_loss": value}

  return loss


def frozen_encoder_params(config, workdir):
  """The EMA motion encoder of the finished stage-1 run in the same workdir."""
  abstract = jax.eval_shape(renderer_stage.init_fn(config), jax.random.key(0))
  return load_params(stage_dir(workdir, "renderer"), abstract)["motion_encoder"]


def dataset(config, latent_table, shard_index=0, shard_count=1):
  windows = window_dataset(
    train_paths(config),
    window_frames=config.motion_train.window_frames,
    audio_margin_frames=audio_margin_frames(config),
    batch_size=config.motion_train.batch_size,
    seed=config.seed + 1,
    shard_index=shard_index,
    shard_count=shard_count,
    windows_per_clip=config.data.windows_per_clip,
  )
  return windows.map(with_latents(latent_table, config.motion_train.window_frames))


def frozen_param(config, path) -> bool:
  """Whether the parameter at `path` stays as initialised: the pretrained audio encoder, unless trainable."""
  return path[0] == "audio_encoder" and audio_encoders.is_frozen(config.audio, path[1:])


def train(config, workdir):
  """Trains stage 2. A pretrained audio encoder is imported first, which records its architecture
  in `config.audio.architecture` (the run's checkpoints and bundle then rebuild it on their own)."""
  pretrained_audio = audio_encoders.import_pretrained(config.audio)
  say("encoding the training clips with the frozen stage-1 motion encoder")
  table = encode_clips(config, frozen_encoder_params(config, workdir), train_paths(config))
  return run_stage(
    config,
    workdir,
    "motion",
    init_fn(config, pretrained_audio),
    loss_fn(config),
    dataset(config, table, jax.process_index(), jax.process_count()),
    frozen=lambda path: frozen_param(config, path),
  )
