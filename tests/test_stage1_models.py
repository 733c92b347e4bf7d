"""Stage-1 models: motion encoder and renderer shapes, init behaviour, sharding metadata, learning."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxtalk.diffusion import flow
from jaxtalk.models.motion_encoder import MotionEncoder
from jaxtalk.models.renderer import Renderer

# Small enough that compiling them, which dominates these tests on CPU, stays short.
TINY_ENCODER = dict(num_tokens=2, token_dim=4, grid_size=4, patch_size=2, base_channels=8,
                    max_channels=16, pool_heads=2)
TINY_RENDERER = dict(base_channels=16, channel_mults=(1, 2), patch_size=2, attention_heads=2,
                     cond_dim=32)


def _images(rng, batch, size):
  return jax.random.uniform(rng, (batch, size, size, 3), minval=-1.0, maxval=1.0)


@jax.jit
def _init_tiny(image):
  """Variables of the tiny encoder and renderer (one compiled program: eager init is slow)."""
  encoder, renderer = MotionEncoder(**TINY_ENCODER), Renderer(**TINY_RENDERER)
  enc_rng, ren_rng = jax.random.split(jax.random.key(0))
  enc_vars = encoder.init(enc_rng, image)
  motion = encoder.apply(enc_vars, image)
  ren_vars = renderer.init(ren_rng, image, jnp.zeros(image.shape[:1]), image, motion)
  return enc_vars, ren_vars


@pytest.mark.parametrize("size", [64, 128])
def test_default_models_give_the_documented_shapes(size):
  encoder, renderer = MotionEncoder(), Renderer()
  image = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  enc_vars = jax.eval_shape(encoder.init, jax.random.key(0), image)
  motion = jax.eval_shape(encoder.apply, enc_vars, image)
  assert motion.shape == (2, encoder.num_tokens, encoder.token_dim)
  assert encoder.latent_dim == encoder.num_tokens * encoder.token_dim
  t = jax.ShapeDtypeStruct((2,), jnp.float32)
  ren_vars = jax.eval_shape(renderer.init, jax.random.key(0), image, t, image, motion)
  velocity = jax.eval_shape(renderer.apply, ren_vars, image, t, image, motion)
  assert velocity.shape == (2, size, size, 3) and velocity.dtype == jnp.float32


def test_sizes_the_networks_cannot_tile_are_rejected():
  with pytest.raises(ValueError, match="power of two"):
    jax.eval_shape(MotionEncoder().init, jax.random.key(0), jnp.zeros((1, 48, 48, 3)))
  image = jnp.zeros((1, 20, 20, 3))
  with pytest.raises(ValueError, match="divisible by 8"):
    jax.eval_shape(Renderer(patch_size=2, channel_mults=(1, 2, 2)).init, jax.random.key(0), image,
                   jnp.zeros(1), image, jnp.zeros((1, 4, 8)))


def test_untrained_renderer_predicts_zero_velocity_and_latents_have_unit_scale():
  encoder, renderer = MotionEncoder(**TINY_ENCODER), Renderer(**TINY_RENDERER)
  image = _images(jax.random.key(1), 4, 16)
  enc_vars, ren_vars = _init_tiny(image)

  @jax.jit
  def forward(enc_vars, ren_vars, image):
    motion = encoder.apply(enc_vars, image)
    return motion, renderer.apply(ren_vars, image, jnp.full((4,), 0.3), image, motion)

  motion, velocity = forward(enc_vars, ren_vars, image)
  assert motion.shape == (4, 2, 4)
  flat = motion.reshape(4, -1)
  np.testing.assert_allclose(jnp.mean(flat, -1), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.var(flat, -1), 1.0, rtol=1e-3)
  assert velocity.shape == image.shape
  assert float(jnp.max(jnp.abs(velocity))) == 0.0


def test_every_parameter_is_float32_and_carries_logical_axis_names():
  image = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
  for variables in jax.eval_shape(_init_tiny, image):
    leaves = jax.tree.leaves(variables["params"], is_leaf=lambda x: isinstance(x, nn.Partitioned))
    for leaf in leaves:
      assert isinstance(leaf, nn.LogicallyPartitioned), leaf
      assert len(leaf.names) == leaf.value.ndim and leaf.value.dtype == jnp.float32


def _train_step(encoder, renderer, optimizer):
  """One joint flow-matching step of encoder + renderer on (target, reference) images."""
  def loss_fn(params, target, reference, rng):
    noise_rng, time_rng = jax.random.split(rng)
    motion = encoder.apply({"params": params["encoder"]}, target)
    noise = jax.random.normal(noise_rng, target.shape)
    t = flow.sample_time(time_rng, target.shape[:1])
    velocity = renderer.apply({"params": params["renderer"]}, flow.interpolate(target, noise, t), t,
                              reference, motion)
    return flow.flow_matching_loss(velocity, target, noise)

  @jax.jit
  def step(params, opt_state, target, reference, rng):
    loss, grads = jax.value_and_grad(loss_fn)(params, target, reference, rng)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, grads

  return step


def test_training_reaches_every_parameter_and_overfits_a_few_frames():
  encoder, renderer = MotionEncoder(**TINY_ENCODER), Renderer(**TINY_RENDERER)
  # Four frames of one "identity" that differ only in a moving bright square: the renderer sees the
  # same reference for all of them, so only the motion tokens can tell it which frame to draw.
  base = _images(jax.random.key(2), 1, 16) * 0.3
  targets = jnp.concatenate([base.at[:, 4 * i:4 * i + 4, 6:10].set(1.0) for i in range(4)])
  references = jnp.broadcast_to(base, targets.shape)
  enc_vars, ren_vars = _init_tiny(targets)
  params = nn.unbox({"encoder": enc_vars["params"], "renderer": ren_vars["params"]})
  optimizer = optax.adam(3e-3)
  opt_state = optimizer.init(params)
  step = _train_step(encoder, renderer, optimizer)

  losses = []
  for i in range(150):
    params, opt_state, loss, grads = step(params, opt_state, targets, references, jax.random.key(i))
    losses.append(float(loss))
    if i == 3:  # zero-init layers open one after another; a few steps in, every gradient is live
      dead = [jax.tree_util.keystr(path) for path, g in jax.tree_util.tree_leaves_with_path(grads)
              if not bool(jnp.any(g != 0))]
      assert not dead, dead
  first, last = np.mean(losses[:15]), np.mean(losses[-15:])
  assert last < 0.5 * first, (first, last)
