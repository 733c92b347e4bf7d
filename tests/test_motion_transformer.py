"""Motion transformer: masks respected, and the rolling KV-cache sampler equals full recomputation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk.inference.motion_sampler import (
  RollingSchedule,
  padded_audio_frames,
  sample_motion,
  sample_motion_recompute,
)
from jaxtalk.models.motion_transformer import MotionTransformer

LATENT, AUDIO_DIM = 6, 10


def _model(**kw):
  return MotionTransformer(
    latent_dim=LATENT,
    dim=32,
    depth=2,
    heads=4,
    chunk_size=3,
    lookback_chunks=2,
    audio_radius=2,
    **{"mlp_ratio": 4.0, "rope_fraction": 0.5, "dtype": jnp.float32, **kw},
  )


def _randomised_params(model, rng):
  """Init, then replace every (often zero-initialised) parameter by noise so no branch is a no-op."""
  T = 2 * model.chunk_size
  params = model.init(
    rng,
    jnp.zeros((1, T, LATENT)),
    jnp.zeros((1, T)),
    jnp.zeros((1, T, AUDIO_DIM)),
    reference=jnp.zeros((1, LATENT)),
  )["params"]
  params = jax.tree.map(
    lambda p: p.unbox() if hasattr(p, "unbox") else p, params, is_leaf=lambda p: hasattr(p, "unbox")
  )
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(7), len(leaves))
  return jax.tree.unflatten(
    tree, [0.3 * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves)]
  )


@pytest.fixture(scope="module")
def model_and_params():
  model = _model()
  return model, _randomised_params(model, jax.random.key(0))


def test_frames_never_see_later_chunks_or_beyond_the_lookback(model_and_params):
  model, params = model_and_params
  T = 5 * model.chunk_size
  rng = np.random.default_rng(0)
  latents = rng.normal(size=(1, T, LATENT)).astype(np.float32)
  t = rng.uniform(size=(1, T)).astype(np.float32)
  audio = rng.normal(size=(1, T, AUDIO_DIM)).astype(np.float32)
  ref = rng.normal(size=(1, LATENT)).astype(np.float32)
  run = jax.jit(lambda x: model.apply({"params": params}, x, t, audio, reference=ref)[0])
  base = run(latents)
  changed = latents.copy()
  changed[:, 4 * model.chunk_size :] += 1.0  # perturb the last chunk only
  out = run(changed)
  np.testing.assert_allclose(
    out[:, : 4 * model.chunk_size], base[:, : 4 * model.chunk_size], atol=1e-6
  )
  assert np.abs(out[:, 4 * model.chunk_size :] - base[:, 4 * model.chunk_size :]).max() > 1e-3
  # Per layer the lookback is 2 chunks; with 2 layers chunk 0 influences chunks up to 4 only.
  early = latents.copy()
  early[:, : model.chunk_size] += 1.0
  out = run(early)
  assert np.abs(out[:, 4 * model.chunk_size :] - base[:, 4 * model.chunk_size :]).max() > 1e-4


def test_reference_sink_is_position_free(model_and_params):
  """Shifting every frame position leaves the output unchanged: RoPE is relative, the sink has none."""
  model, params = model_and_params
  T = 2 * model.chunk_size
  rng = np.random.default_rng(1)
  args = (
    rng.normal(size=(1, T, LATENT)),
    rng.uniform(size=(1, T)),
    rng.normal(size=(1, T + 8, AUDIO_DIM)),
  )
  ref = rng.normal(size=(1, LATENT))
  run = lambda offset: model.apply(
    {"params": params}, *args, reference=ref, frame_offset=offset, audio_offset=offset - 4
  )[0]
  np.testing.assert_allclose(run(0), run(3 * 1000), atol=2e-4)


def test_cached_sampler_matches_recompute(model_and_params):
  """With guidance, 3 chunks in flight, and a length that is not a whole number of chunks."""
  cfg_scale, num_frames, in_flight = 2.5, 13, 3
  model, params = model_and_params
  schedule = RollingSchedule(steps=6, chunks_in_flight=in_flight, cfg_scale=cfg_scale)
  front, back = padded_audio_frames(model, schedule, num_frames)
  rng = np.random.default_rng(2)
  audio = jnp.asarray(rng.normal(size=(2, front + num_frames + back, AUDIO_DIM)), jnp.float32)
  ref = jnp.asarray(rng.normal(size=(2, LATENT)), jnp.float32)
  key = jax.random.key(3)
  cached = jax.jit(sample_motion, static_argnums=(0, 5, 6))(
    model, params, audio, ref, key, schedule, num_frames
  )
  full = jax.jit(sample_motion_recompute, static_argnums=(0, 5, 6))(
    model, params, audio, ref, key, schedule, num_frames
  )
  assert cached.shape == (2, num_frames, LATENT)
  assert np.all(np.isfinite(cached))
  np.testing.assert_allclose(cached, full, rtol=1e-4, atol=1e-4)
