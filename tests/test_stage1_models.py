"""Stage-1 models: motion encoder and renderer shapes, init behaviour, sharding metadata, remat,
learning."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_configs import TINY_RENDERER

from configs import demo
from jaxtalk.diffusion import flow
from jaxtalk.models.factory import Models
from jaxtalk.models.motion_encoder import MotionEncoder
from jaxtalk.models.renderer import Renderer

# Small enough that compiling them, which dominates these tests on CPU, stays short.
TINY_ENCODER = dict(
  num_tokens=2,
  token_dim=4,
  grid_size=4,
  patch_size=4,
  base_channels=16,
  max_channels=64,
  dtype=jnp.float32,
)


# Compiling, not running, is what these tests spend their time on; LLVM's optimisations do not pay
# off for a few hundred steps of a tiny model.
quick_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _key(seed):
  # XLA on CPU compiles the default (partitionable threefry) generator slowly for 4-D shapes such
  # as conv kernels; "rbg" keys compile fast and are as good for tests.
  return jax.random.key(seed, impl="rbg")


def _images(rng, batch, size):
  return jax.random.uniform(rng, (batch, size, size, 3), minval=-1.0, maxval=1.0)


@quick_jit
def _init_tiny(image):
  """Variables of the tiny encoder and renderer (one compiled program: eager init is slow)."""
  encoder, renderer = MotionEncoder(**TINY_ENCODER), Renderer(**TINY_RENDERER)
  enc_rng, ren_rng = jax.random.split(_key(0))
  enc_vars = encoder.init(enc_rng, image)
  motion = encoder.apply(enc_vars, image)
  ren_vars = renderer.init(ren_rng, image, jnp.zeros(image.shape[:1]), image, motion, motion)
  return enc_vars, ren_vars


@pytest.mark.parametrize("size", [64, 128])
def test_demo_models_give_the_documented_shapes(size):
  config = demo.get_config()
  config.data.image_size = size
  models = Models.from_config(config)
  encoder, renderer = models.motion_encoder, models.renderer
  image = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  enc_vars = jax.eval_shape(encoder.init, jax.random.key(0), image)
  motion = jax.eval_shape(encoder.apply, enc_vars, image)
  assert motion.shape == (2, encoder.num_tokens, encoder.token_dim)
  assert encoder.latent_dim == encoder.num_tokens * encoder.token_dim
  t = jax.ShapeDtypeStruct((2,), jnp.float32)
  ren_vars = jax.eval_shape(renderer.init, jax.random.key(0), image, t, image, motion, motion)
  velocity = jax.eval_shape(renderer.apply, ren_vars, image, t, image, motion, motion)
  assert velocity.shape == (2, size, size, 3) and velocity.dtype == jnp.float32


def test_sizes_the_networks_cannot_tile_are_rejected():
  with pytest.raises(ValueError, match="power of two"):
    jax.eval_shape(MotionEncoder(**TINY_ENCODER).init, jax.random.key(0), jnp.zeros((1, 48, 48, 3)))
  image = jnp.zeros((1, 20, 20, 3))
  with pytest.raises(ValueError, match="divisible by 8"):
    jax.eval_shape(
      Renderer(**{**TINY_RENDERER, "channel_mults": (1, 2, 2)}).init,
      jax.random.key(0),
      image,
      jnp.zeros(1),
      image,
      jnp.zeros((1, 4, 8)),
      jnp.zeros((1, 4, 8)),
    )


def test_untrained_renderer_outputs_zero_and_latents_have_unit_scale():
  encoder, renderer = MotionEncoder(**TINY_ENCODER), Renderer(**TINY_RENDERER)
  image = _images(_key(1), 4, 16)
  enc_vars, ren_vars = _init_tiny(image)

  @quick_jit
  def forward(enc_vars, ren_vars, image):
    motion = encoder.apply(enc_vars, image)
    return motion, renderer.apply(ren_vars, image, jnp.full((4,), 0.3), image, motion, motion)

  motion, frame = forward(enc_vars, ren_vars, image)
  assert motion.shape == (4, 2, 4)
  flat = motion.reshape(4, -1)
  np.testing.assert_allclose(jnp.mean(flat, -1), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.var(flat, -1), 1.0, rtol=1e-3)
  assert frame.shape == image.shape
  assert float(jnp.max(jnp.abs(frame))) == 0.0


def test_every_parameter_is_float32_and_carries_logical_axis_names():
  image = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
  for variables in jax.eval_shape(_init_tiny, image):
    leaves = jax.tree.leaves(variables["params"], is_leaf=lambda x: isinstance(x, nn.Partitioned))
    for leaf in leaves:
      assert isinstance(leaf, nn.LogicallyPartitioned), leaf
      assert len(leaf.names) == leaf.value.ndim and leaf.value.dtype == jnp.float32


@quick_jit
def _randomised(params):
  """Every (often zero-initialised) parameter replaced by noise, so that no branch is a no-op."""
  leaves, tree = jax.tree.flatten(nn.unbox(params))
  keys = jax.random.split(_key(4), len(leaves))
  return jax.tree.unflatten(
    tree, [0.2 * jax.random.normal(k, p.shape) for k, p in zip(keys, leaves)]
  )


def test_bfloat16_compute_keeps_float32_params_and_matches_float32():
  image = _images(_key(3), 4, 16)
  params = _randomised(_init_tiny(image))

  def forward(dtype):
    encoder = MotionEncoder(**{**TINY_ENCODER, "dtype": dtype})
    renderer = Renderer(**{**TINY_RENDERER, "dtype": dtype})

    @quick_jit
    def run(params):
      motion = encoder.apply(params[0], image)
      return motion, renderer.apply(params[1], image, jnp.full((4,), 0.4), image, motion, motion)

    return run(params)

  motion32, frame32 = forward(jnp.float32)
  motion16, frame16 = forward(jnp.bfloat16)
  assert motion16.dtype == frame16.dtype == jnp.float32
  scale = float(jnp.std(frame32))
  assert scale > 0.1
  assert float(jnp.max(jnp.abs(motion16 - motion32))) < 0.03 * float(jnp.max(jnp.abs(motion32)))
  assert float(jnp.sqrt(jnp.mean(jnp.square(frame16 - frame32)))) < 0.02 * scale


def test_renderer_remat_changes_neither_values_nor_gradients():
  image = _images(_key(5), 4, 16)
  params = _randomised(_init_tiny(image))[1]
  motion = jax.random.normal(_key(6), (4, 2, 4))

  def loss_and_grad(policy):
    renderer = Renderer(**{**TINY_RENDERER, "remat": policy})
    loss = lambda p: jnp.mean(
      jnp.square(renderer.apply(p, image, jnp.full((4,), 0.4), image, motion, motion))
    )
    return jax.value_and_grad(loss)

  rematted = loss_and_grad("full")
  assert "remat" in str(jax.make_jaxpr(rematted)(params))  # jax.checkpoint's primitive is there
  plain = quick_jit(loss_and_grad("none"))(params)
  for got, want in zip(jax.tree.leaves(quick_jit(rematted)(params)), jax.tree.leaves(plain)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def _train_step(encoder, renderer, optimizer):
  """One joint step of encoder + renderer, as stage 1 trains them: the renderer predicts the clean
  frame and the loss is on the velocity that prediction implies."""

  def loss_fn(params, target, reference, rng):
    noise_rng, time_rng = jax.random.split(rng)
    motion = encoder.apply({"params": params["encoder"]}, target)
    reference_motion = encoder.apply({"params": params["encoder"]}, reference)
    noise = jax.random.normal(noise_rng, target.shape)
    # Times biased towards noise: there x_t shows little of the target and the motion tokens must
    # say which frame to draw (at the default mean 0 the renderer learns to read x_t first).
    t = flow.sample_time(time_rng, target.shape[:1], mean=-1.0)
    x_t = flow.interpolate(target, noise, t)
    frame = renderer.apply(
      {"params": params["renderer"]}, x_t, t, reference, motion, reference_motion
    )
    return flow.flow_matching_loss(flow.velocity_from_data(frame, x_t, t), target, noise)

  @quick_jit
  def step(params, opt_state, target, reference, rng):
    loss, grads = jax.value_and_grad(loss_fn)(params, target, reference, rng)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, grads

  return step


def test_training_reaches_every_parameter_and_learns_to_draw_what_the_motion_says():
  encoder, renderer = MotionEncoder(**TINY_ENCODER), Renderer(**TINY_RENDERER)
  # Four frames of one "identity" that differ only in a moving bright square: the renderer sees the
  # same reference for all of them, so only the motion tokens can tell it which frame to draw.
  base = _images(_key(2), 1, 16) * 0.3
  targets = jnp.concatenate([base.at[:, 4 * i : 4 * i + 4, 6:10].set(1.0) for i in range(4)])
  references = jnp.broadcast_to(base, targets.shape)
  enc_vars, ren_vars = _init_tiny(targets)
  params = nn.unbox({"encoder": enc_vars["params"], "renderer": ren_vars["params"]})
  optimizer = optax.flatten(optax.adam(3e-3))  # one fused update: shorter to compile
  opt_state = optimizer.init(params)
  step = _train_step(encoder, renderer, optimizer)

  losses = []
  for i in range(400):
    params, opt_state, loss, grads = step(params, opt_state, targets, references, _key(i))
    losses.append(float(loss))
    if i == 3:  # zero-init layers open one after another; a few steps in, every gradient is live
      dead = [
        jax.tree_util.keystr(path)
        for path, g in jax.tree_util.tree_leaves_with_path(grads)
        if not bool(jnp.any(g != 0))
      ]
      assert not dead, dead
  first, last = np.mean(losses[:20]), np.mean(losses[-20:])
  assert last < 0.2 * first, (first, last)

  @quick_jit
  def frame_error_from_noise(params, motion_source):
    """Error of the frame predicted from (almost) pure noise given the motion of `motion_source`."""
    motion = encoder.apply({"params": params["encoder"]}, motion_source)
    reference_motion = encoder.apply({"params": params["encoder"]}, references)
    t = jnp.full(targets.shape[:1], 0.02)
    x_t = flow.interpolate(targets, jax.random.normal(_key(999), targets.shape), t)
    frame = renderer.apply(
      {"params": params["renderer"]}, x_t, t, references, motion, reference_motion
    )
    return jnp.mean(jnp.square(frame - targets))

  own_motion = float(frame_error_from_noise(params, targets))
  other_motion = float(frame_error_from_noise(params, jnp.roll(targets, 1, axis=0)))
  assert own_motion < 0.3 * other_motion, (own_motion, other_motion)
