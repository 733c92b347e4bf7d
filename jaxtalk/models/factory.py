"""Every network of a config, built in one place: what sampling and training share.

`Models.from_config(config)` builds the four networks once, from the config's sections (each
section holds exactly its module's fields) and its compute dtype. Their parameters live in four
groups, named as checkpoints and bundles store them:

    motion_encoder  frame -> motion latent (stage 1)
    renderer        reference image + motion latent -> frame (stage 1)
    audio_encoder   waveform -> frame-aligned audio features (stage 2)
    motion          the diffusion-forcing motion transformer (stage 2)

It also owns what both sides need to agree on: the parameter shapes of each group, how uint8
frames enter the image models, and how a flat motion latent (what stage 2 models) maps to the
encoder's tokens (what the renderer reads).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtalk.models.audio.encoder import MelAudioEncoder
from jaxtalk.models.audio.pretrained.features import PretrainedAudioEncoder
from jaxtalk.models.audio.pretrained.importer import configured_spec
from jaxtalk.models.motion_encoder import MotionEncoder
from jaxtalk.models.motion_transformer import MotionTransformer
from jaxtalk.models.renderer import Renderer
from jaxtalk.parallel.sharding import strip_partitioning
from jaxtalk.timebase import SAMPLES_PER_FRAME

PARAM_GROUPS = ("motion_encoder", "renderer", "audio_encoder", "motion")


def to_model_image(images):
  """uint8 [0, 255] -> float32 [-1, 1], the scale both image models work in."""
  return jnp.asarray(images, jnp.float32) / 127.5 - 1.0


def to_uint8_image(images):
  """float [-1, 1] -> uint8, clipping what the sampler overshoots."""
  return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


@dataclasses.dataclass(frozen=True)
class Models:
  motion_encoder: MotionEncoder
  renderer: Renderer
  audio_encoder: MelAudioEncoder | PretrainedAudioEncoder
  motion: MotionTransformer
  image_size: int

  @classmethod
  def from_config(cls, config) -> Models:
    dtype = jnp.dtype(config.compute_dtype)
    motion_encoder = MotionEncoder(**config.motion_encoder.to_dict(), dtype=dtype)
    renderer_fields = config.renderer.to_dict()
    # JSON round trips (configs saved with checkpoints and bundles) turn tuples into lists.
    renderer_fields["channel_mults"] = tuple(renderer_fields["channel_mults"])
    return cls(
      motion_encoder=motion_encoder,
      renderer=Renderer(**renderer_fields, dtype=dtype),
      audio_encoder=audio_encoder(config.audio, dtype),
      motion=MotionTransformer(
        latent_dim=motion_encoder.latent_dim,
        **{**config.motion.to_dict(), "emotions": tuple(config.motion.emotions)},
        dtype=dtype,
      ),
      image_size=config.data.image_size,
    )

  @property
  def latent_dim(self) -> int:
    return self.motion_encoder.latent_dim

  @property
  def audio_margin_frames(self) -> int:
    """Audio to give beyond each end of a span of frames, so that the frames at its edges hear what
    they would mid-file: the motion model's audio radius plus the audio encoder's own context."""
    return self.motion.audio_radius + self.audio_encoder.context_frames

  # ------------------------------------------------------------------------------ parameters
  def init(self, rng: jax.Array, groups: tuple[str, ...] = PARAM_GROUPS) -> dict:
    """Fresh parameters of `groups`, still boxed with their logical axis names (for sharding).

    Traced on the smallest inputs the models take: no parameter shape depends on an input's length.
    """
    size, chunk, margin = self.image_size, self.motion.chunk_size, self.audio_margin_frames
    image = jnp.zeros((1, size, size, 3))
    tokens = self.tokens(jnp.zeros((1, self.latent_dim)))
    inits = {
      "motion_encoder": lambda key: self.motion_encoder.init(key, image),
      "renderer": lambda key: self.renderer.init(
        key, image, jnp.zeros((1,)), image, tokens, tokens
      ),
      "audio_encoder": lambda key: self.audio_encoder.init(
        key, jnp.zeros((1, (chunk + 2 * margin) * SAMPLES_PER_FRAME))
      ),
      "motion": lambda key: self.motion.init(
        key,
        jnp.zeros((1, chunk, self.latent_dim)),
        jnp.zeros((1, chunk)),
        jnp.zeros((1, chunk + 2 * margin, self.audio_encoder.dim)),
        reference=jnp.zeros((1, self.latent_dim)),
        audio_offset=-margin,
      ),
    }
    keys = jax.random.split(rng, len(PARAM_GROUPS))
    # Each group's key depends on the group alone, whichever groups are asked for.
    return {
      name: inits[name](keys[PARAM_GROUPS.index(name)])["params"]
      for name in PARAM_GROUPS
      if name in groups
    }

  def abstract_params(self, groups: tuple[str, ...] = PARAM_GROUPS) -> dict:
    """ShapeDtypeStructs of the parameters of `groups`, computed without allocating them."""
    return strip_partitioning(jax.eval_shape(lambda rng: self.init(rng, groups), jax.random.key(0)))

  # ---------------------------------------------------------------------- shared conversions
  def tokens(self, latents: jax.Array) -> jax.Array:
    """Flat motion latents [..., latent_dim] -> the encoder's tokens [..., num_tokens, token_dim]."""
    return latents.reshape(
      latents.shape[:-1] + (self.motion_encoder.num_tokens, self.motion_encoder.token_dim)
    )

  def encode_motion(self, params: dict, frames: jax.Array) -> jax.Array:
    """uint8 frames [..., S, S, 3] -> flat motion latents [..., latent_dim]; `params` are the
    motion encoder's."""
    lead = frames.shape[:-3]
    images = to_model_image(frames).reshape((-1,) + frames.shape[-3:])
    tokens = self.motion_encoder.apply({"params": params}, images)
    return tokens.reshape(lead + (self.latent_dim,))


def audio_encoder(audio_cfg, dtype) -> nn.Module:
  """The audio encoder the `audio` section names."""
  if audio_cfg.encoder == "mel":
    return MelAudioEncoder(
      dim=audio_cfg.dim, n_mels=audio_cfg.n_mels, layers=audio_cfg.layers, dtype=dtype
    )
  return PretrainedAudioEncoder(
    spec=configured_spec(audio_cfg),
    dim=audio_cfg.dim,
    layer=audio_cfg.layer,
    weighted_layers=audio_cfg.weighted_layers,
    trainable=audio_cfg.trainable,
    segment_seconds=audio_cfg.segment_seconds,
    context_seconds=audio_cfg.context_seconds,
    dtype=dtype,
  )
