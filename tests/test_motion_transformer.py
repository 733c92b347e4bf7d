"""Motion transformer: masks respected, scanned blocks and remat change nothing, and the rolling
KV-cache sampler equals full recomputation."""

import operator

import flax.linen as nn
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
    **{
      "mlp_ratio": 4.0,
      "rope_fraction": 0.5,
      "scan_layers": True,
      "remat": "none",
      "dtype": jnp.float32,
      "emotions": ("calm", "glad"),
      **kw,
    },
  )


def _randomised_params(model):
  """Noise in the shape of every parameter (many start at zero), so that no branch is a no-op."""
  T = 2 * model.chunk_size
  shapes = jax.eval_shape(
    model.init,
    jax.random.key(0),
    jnp.zeros((1, T, LATENT)),
    jnp.zeros((1, T)),
    jnp.zeros((1, T, AUDIO_DIM)),
    reference=jnp.zeros((1, LATENT)),
  )["params"]
  # numpy's generator: XLA on CPU takes a minute to compile jax's for these many shapes.
  rng = np.random.default_rng(7)
  draw = lambda p: jnp.asarray(0.3 * rng.standard_normal(p.shape), jnp.float32)
  return jax.tree.map(draw, nn.meta.unbox(shapes))


def _unstacked(params, depth):
  """A scanned model's parameters laid out for the unrolled one: blocks -> block_0, block_1, ..."""
  params = dict(params)
  blocks = params.pop("blocks")
  return {
    **params,
    **{f"block_{i}": jax.tree.map(operator.itemgetter(i), blocks) for i in range(depth)},
  }


def _inputs(model, seed):
  """Two chunks of frames: (latents, t, audio) and a reference."""
  T = 2 * model.chunk_size
  rng = np.random.default_rng(seed)
  args = (
    rng.normal(size=(2, T, LATENT)).astype(np.float32),
    rng.uniform(size=(2, T)).astype(np.float32),
    rng.normal(size=(2, T, AUDIO_DIM)).astype(np.float32),
  )
  return args, rng.normal(size=(2, LATENT)).astype(np.float32)


@pytest.fixture(scope="module")
def model_and_params():
  model = _model()
  return model, _randomised_params(model)


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


@pytest.mark.parametrize("emotion_cfg_scale", [1.0, 1.5])
def test_cached_sampler_matches_recompute(model_and_params, emotion_cfg_scale):
  """With audio guidance (and emotion guidance: three branches), 3 chunks in flight, acting
  controls, and a length that is not a whole number of chunks."""
  cfg_scale, num_frames, in_flight = 2.5, 13, 3
  model, params = model_and_params
  schedule = RollingSchedule(
    steps=6, chunks_in_flight=in_flight, audio_guided=True, emotion_guided=emotion_cfg_scale != 1
  )
  guidance = (cfg_scale, emotion_cfg_scale)
  acting = jnp.stack(
    [
      model.acting_layout.vector("glad", 0.7, pose_amplitude=0.5),
      model.acting_layout.vector(blink_rate=20.0),
    ]
  )
  front, back = padded_audio_frames(model, schedule, num_frames)
  rng = np.random.default_rng(2)
  audio = jnp.asarray(rng.normal(size=(2, front + num_frames + back, AUDIO_DIM)), jnp.float32)
  ref = jnp.asarray(rng.normal(size=(2, LATENT)), jnp.float32)
  key = jax.random.key(3)
  cached = jax.jit(sample_motion, static_argnums=(0, 5, 6))(
    model, params, audio, ref, key, schedule, num_frames, acting, guidance
  )
  full = jax.jit(sample_motion_recompute, static_argnums=(0, 5, 6))(
    model, params, audio, ref, key, schedule, num_frames, acting, guidance
  )
  assert cached.shape == (2, num_frames, LATENT)
  assert np.all(np.isfinite(cached))
  np.testing.assert_allclose(cached, full, rtol=1e-4, atol=1e-4)


def test_scanned_and_unrolled_blocks_compute_the_same_function(model_and_params):
  """The same parameters, restacked, give the same velocities and keys/values, in training mode
  and when attending to a cache."""
  scanned, params = model_and_params
  unrolled = _model(scan_layers=False)
  unrolled_params = _unstacked(params, scanned.depth)
  args, ref = _inputs(scanned, seed=4)
  expected = jax.eval_shape(unrolled.init, jax.random.key(0), *args, reference=ref)["params"]
  assert jax.tree.map(np.shape, unrolled_params) == jax.tree.map(np.shape, nn.meta.unbox(expected))

  def run(model, params):
    velocity, kv = model.apply({"params": params}, *args, reference=ref)
    T = args[0].shape[1]
    cached, new_kv = model.apply(
      {"params": params}, *args, kv_context=kv, frame_offset=T, audio_offset=T - 2
    )
    return velocity, kv, cached, new_kv

  outputs = jax.jit(run, static_argnums=0)
  for got, want in zip(
    jax.tree.leaves(outputs(unrolled, unrolled_params)), jax.tree.leaves(outputs(scanned, params))
  ):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_remat_changes_neither_values_nor_gradients(model_and_params):
  """Scanned blocks under the "dots" policy, as the pod config runs them (the renderer's test
  covers "full")."""
  scanned, params = model_and_params
  args, ref = _inputs(scanned, seed=5)

  def loss_and_grad(model):
    def loss(params):
      velocity, _ = model.apply({"params": params}, *args, reference=ref)
      return jnp.mean(jnp.square(velocity))

    return jax.value_and_grad(loss)

  rematted = loss_and_grad(_model(remat="dots"))
  assert "remat" in str(jax.make_jaxpr(rematted)(params))  # jax.checkpoint's primitive is there
  plain = jax.jit(loss_and_grad(scanned))(params)
  for got, want in zip(jax.tree.leaves(jax.jit(rematted)(params)), jax.tree.leaves(plain)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
