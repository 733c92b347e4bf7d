"""Stage 2: the diffusion-forcing motion transformer (and the audio encoder), on frozen latents.

The motion encoder trained in stage 1 turns every frame of a window into a motion latent; each
frame then gets its own independently drawn flow time (diffusion forcing) and the transformer
learns its velocity, conditioned on the audio and on the latent of a reference frame. A fraction
of examples loses its audio, which classifier-free guidance needs at sampling time.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxtalk.audio.encoder import make_audio_encoder
from jaxtalk.data.pipeline import window_dataset
from jaxtalk.diffusion import flow
from jaxtalk.models import build
from jaxtalk.stages import renderer_stage
from jaxtalk.stages.common import image_to_model, run_stage, stage_dir, train_paths
from jaxtalk.training.checkpoint import load_params


def audio_margin_frames(config) -> int:
  """Audio context beyond each end of a window: what the cross-attention window plus the audio
  encoder's receptive field reach, so frames at the window edge hear what they would mid-clip."""
  return config.motion.audio_window + 2 * config.audio.layers


def encode_frames(encoder, encoder_params, frames):
  """uint8 frames [..., H, W, 3] -> flat motion latents [..., latent_dim]."""
  lead = frames.shape[:-3]
  images = image_to_model(frames).reshape((-1,) + frames.shape[-3:])
  tokens = encoder.apply({"params": encoder_params}, images)
  return tokens.reshape(lead + (-1,))


def init_fn(config):
  audio_encoder, motion = make_audio_encoder(config.audio, config.data), build.motion_transformer(config)
  frames, margin = config.motion_train.window_frames, audio_margin_frames(config)
  spf = config.data.sample_rate // config.data.fps

  def init(rng):
    audio_rng, motion_rng = jax.random.split(rng)
    waveform = jnp.zeros((1, (frames + 2 * margin) * spf))
    audio_params = audio_encoder.init(audio_rng, waveform)["params"]
    features = jnp.zeros((1, frames + 2 * margin, config.audio.dim))
    latents = jnp.zeros((1, frames, motion.latent_dim))
    motion_params = motion.init(motion_rng, latents, jnp.zeros((1, frames)), features,
                                reference=jnp.zeros((1, motion.latent_dim)),
                                audio_offset=-margin)["params"]
    return {"audio_encoder": audio_params, "motion": motion_params}
  return init


def loss_fn(config, encoder_params):
  """The loss closes over the frozen stage-1 encoder: small, and constant for the whole run."""
  encoder = build.motion_encoder(config)
  audio_encoder, motion = make_audio_encoder(config.audio, config.data), build.motion_transformer(config)
  train_cfg, margin = config.motion_train, audio_margin_frames(config)

  def loss(params, batch, rng):
    latents = jax.lax.stop_gradient(encode_frames(encoder, encoder_params, batch["frames"]))
    reference = jax.lax.stop_gradient(encode_frames(encoder, encoder_params, batch["reference"]))
    features = audio_encoder.apply({"params": params["audio_encoder"]}, batch["audio"])
    time_rng, noise_rng, drop_rng = jax.random.split(rng, 3)
    t = jax.random.uniform(time_rng, latents.shape[:2])  # one flow time per frame
    noise = jax.random.normal(noise_rng, latents.shape)
    keep = jax.random.uniform(drop_rng, latents.shape[:1]) >= train_cfg.audio_dropout
    velocity, _ = motion.apply({"params": params["motion"]}, flow.interpolate(latents, noise, t), t,
                               features, audio_keep=keep, reference=reference, audio_offset=-margin)
    value = flow.flow_matching_loss(velocity, latents, noise)
    return value, {"flow_loss": value}
  return loss


def frozen_encoder_params(config, workdir):
  """The EMA motion encoder of the finished stage-1 run in the same workdir."""
  abstract = jax.eval_shape(renderer_stage.init_fn(config), jax.random.key(0))
  return load_params(stage_dir(workdir, "renderer"), abstract)["motion_encoder"]


def dataset(config, shard_index=0, shard_count=1):
  return window_dataset(train_paths(config), window_frames=config.motion_train.window_frames,
                        audio_margin_frames=audio_margin_frames(config),
                        batch_size=config.motion_train.batch_size, seed=config.seed + 1,
                        shard_index=shard_index, shard_count=shard_count,
                        windows_per_clip=config.data.windows_per_clip)


def train(config, workdir):
  return run_stage(config, workdir, "motion", init_fn(config),
                   loss_fn(config, frozen_encoder_params(config, workdir)),
                   dataset(config, jax.process_index(), jax.process_count()))
