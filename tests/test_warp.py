"""The renderer's warp: the bilinear warp moves pixels where a known field says, and the motion
field learns a displacement from the warp loss alone."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.ndimage
from tiny_configs import TINY_RENDERER

from jaxtalk.models.renderer import VISIBLE_PRIOR, Renderer
from jaxtalk.models.warp import MotionField, warp
from jaxtalk.stages import renderer_stage
from jaxtalk.stages.renderer_stage import WARP_LOSS_SCALES, pyramid_l1


def _smooth_image(rng, size):
  return scipy.ndimage.gaussian_filter(rng.uniform(-1, 1, (size, size, 3)), (2, 2, 0))


def test_warp_matches_bilinear_interpolation_of_a_known_field():
  rng = np.random.default_rng(0)
  image = rng.uniform(-1, 1, (2, 24, 20, 3)).astype(np.float32)
  # A smooth field of a few pixels, reaching past the borders at the edges.
  flow = scipy.ndimage.gaussian_filter(rng.normal(0, 6, (2, 24, 20, 2)), (0, 4, 4, 0))
  flow = flow.astype(np.float32)
  warped = np.asarray(warp(jnp.asarray(image), jnp.asarray(flow)))
  ys, xs = np.meshgrid(np.arange(24), np.arange(20), indexing="ij")
  for b in range(2):
    coords = [ys + flow[b, ..., 1], xs + flow[b, ..., 0]]
    for c in range(3):
      expected = scipy.ndimage.map_coordinates(image[b, ..., c], coords, order=1, mode="nearest")
      np.testing.assert_allclose(warped[b, ..., c], expected, atol=1e-5)


def test_integer_shift_moves_the_image_and_zero_flow_keeps_it():
  image = jnp.asarray(_smooth_image(np.random.default_rng(1), 16)[None], jnp.float32)
  np.testing.assert_array_equal(warp(image, jnp.zeros(image.shape[:3] + (2,))), image)
  flow = jnp.broadcast_to(jnp.array([-3.0, 2.0]), image.shape[:3] + (2,))  # (dx, dy)
  shifted = warp(image, flow)
  # out[y, x] = image[y + 2, x - 3]: content moved 3 right and 2 up; inside, exactly.
  np.testing.assert_allclose(shifted[0, :-2, 3:], image[0, 2:, :-3], atol=1e-6)


def test_warp_is_differentiable_in_the_field():
  image = jnp.asarray(_smooth_image(np.random.default_rng(2), 16)[None], jnp.float32)
  loss = lambda f: jnp.sum(warp(image, f) ** 2)
  grad = jax.grad(loss)(jnp.full((1, 16, 16, 2), 0.3))
  assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad).max()) > 0


@pytest.mark.parametrize("shift", [(2.0, -1.0)])
def test_motion_field_learns_a_known_displacement_from_the_warp_loss(shift):
  """Each target is the reference moved by (dx, dy) = shift or its negative, and the motion
  tokens say which: the field must learn to point each output pixel back to where it came from."""
  rng = np.random.default_rng(3)
  references = jnp.asarray(np.stack([_smooth_image(rng, 16) for _ in range(4)]), jnp.float32)
  signs = jnp.array([1.0, -1.0, 1.0, -1.0])
  true_flow = -signs[:, None, None, None] * jnp.array(shift)  # backward: where each pixel was
  true_flow = jnp.broadcast_to(true_flow, references.shape[:3] + (2,))
  targets = warp(references, true_flow)
  motion = signs[:, None, None]  # [B, 1 token, 1]
  field = MotionField(channels=16, stride=4, blocks=1, cond_dim=16, dtype=jnp.float32)
  params = nn.unbox(field.init(jax.random.key(0), references, motion)["params"])
  optimizer = optax.adam(1e-2)
  opt_state = optimizer.init(params)

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state):
    def loss(params):
      predicted = field.apply({"params": params}, references, motion)
      return jnp.mean(jnp.abs(warp(references, predicted) - targets))

    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, value

  for _ in range(300):
    params, opt_state, _ = step(params, opt_state)
  predicted = field.apply({"params": params}, references, motion)
  # Away from the borders, where clamping makes the warp's error blind to the field.
  inside = (slice(None), slice(4, -4), slice(4, -4))
  error = jnp.abs(predicted[inside] - true_flow[inside])
  assert float(jnp.mean(error)) < 0.25, float(jnp.mean(error))


def test_warping_renderer_starts_from_the_reference_and_sows_the_warped_image():
  renderer = Renderer(**{**TINY_RENDERER, "warp_channels": 16})
  images = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3), minval=-1, maxval=1)
  motion = jax.random.normal(jax.random.key(2), (2, 2, 4))
  t = jnp.full((2,), 0.5)
  variables = renderer.init(jax.random.key(0), images, t, images, motion, motion)
  frame, state = renderer.apply(
    variables, images, t, images, motion, motion, mutable=["intermediates"]
  )
  (warped,) = state["intermediates"]["warped"]
  (visible,) = state["intermediates"]["visible"]
  # The untrained field is zero: the warped reference is the reference itself; the untrained mask
  # shows it at sigmoid(VISIBLE_PRIOR) everywhere and the U-Net draws nothing (zero) beside it.
  np.testing.assert_allclose(warped, images, atol=1e-6)
  np.testing.assert_allclose(visible, jax.nn.sigmoid(VISIBLE_PRIOR), rtol=1e-6)
  np.testing.assert_allclose(frame, jax.nn.sigmoid(VISIBLE_PRIOR) * images, atol=1e-6)


def test_the_blend_passes_the_warped_reference_through_untouched_where_it_is_visible():
  """Noise in x_t cannot reach the pixels the mask takes from the warped reference: with the mask
  driven to 1, the frame is the warped reference whatever x_t holds."""
  renderer = Renderer(**{**TINY_RENDERER, "warp_channels": 16})
  images = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3), minval=-1, maxval=1)
  motion = jax.random.normal(jax.random.key(2), (2, 2, 4))
  t = jnp.full((2,), 0.3)
  variables = renderer.init(jax.random.key(0), images, t, images, motion, motion)
  params = nn.unbox(variables["params"])
  # The out conv's last feature of every patch pixel is its mask logit: a large bias shows all.
  bias = params["out"]["bias"]
  channels = 3
  logit_mask = (jnp.arange(bias.shape[-1]) % (channels + 1)) == channels
  bias = jnp.where(logit_mask, 40.0, bias)
  # Random drawn content and mask weights, so the U-Net is far from its zero start.
  kernel = 0.1 * jax.random.normal(jax.random.key(3), params["out"]["kernel"].shape)
  kernel = jnp.where(logit_mask, 0.0, kernel)
  params = {**params, "out": {"kernel": kernel, "bias": bias}}
  outputs = []
  for seed in (4, 5):
    x_t = jax.random.normal(jax.random.key(seed), images.shape)
    frame, state = renderer.apply(
      {"params": params}, x_t, t, images, motion, motion, mutable=["intermediates"]
    )
    (warped,) = state["intermediates"]["warped"]
    np.testing.assert_allclose(frame, warped, atol=1e-6)
    outputs.append(frame)
  np.testing.assert_array_equal(outputs[0], outputs[1])


def test_the_pyramid_warp_loss_pulls_a_field_that_is_pixels_off_the_right_way():
  """A flat disc three pixels off: at full resolution the L1 error's gradient in a uniform field
  is zero wherever the disc's edge is farther than a pixel from its target's edge; averaged over
  blocks the error slopes towards the target, so the field moves the right way."""
  ys, xs = np.mgrid[:32, :32]
  disc = lambda cx: ((xs - cx) ** 2 + (ys - 16) ** 2 < 36).astype(np.float32)
  reference = jnp.asarray(disc(13.0))[None, ..., None].repeat(3, -1)
  target = jnp.asarray(disc(16.0))[None, ..., None].repeat(3, -1)

  def loss(dx, scales):
    field = jnp.zeros((1, 32, 32, 2)).at[..., 0].set(dx)
    return pyramid_l1(warp(reference, field), target, scales)

  # out[x] = reference[x + dx]: the disc moves right for dx < 0, so the loss must fall as dx does.
  assert float(jax.grad(loss)(0.0, (1,))) == 0.0
  assert float(jax.grad(loss)(0.0, WARP_LOSS_SCALES)) > 0.0
  assert float(loss(-3.0, WARP_LOSS_SCALES)) < 1e-6


def test_a_random_similarity_moves_turns_and_zooms_about_the_centre():
  size = 33
  dot = jnp.zeros((1, size, size, 1)).at[0, 16, 20, 0].set(1.0)  # 4 px right of the centre

  def moved(shift=(0.0, 0.0), degrees=0.0, zoom=1.0):
    flow = renderer_stage.similarity_flow(
      size, jnp.array([shift]), jnp.deg2rad(jnp.array([degrees])), jnp.array([zoom])
    )
    out = np.asarray(warp(dot, flow))[0, :, :, 0]
    return tuple(int(i) for i in np.unravel_index(out.argmax(), out.shape))

  assert moved() == (16, 20)
  assert moved(shift=(3.0, -2.0)) == (14, 23)  # (dx, dy): right 3, up 2
  assert moved(degrees=90.0) == (20, 16)  # a quarter turn, clockwise on screen (y down)
  assert moved(zoom=2.0) == (16, 24)  # twice as far from the centre
  images = jax.random.uniform(jax.random.key(0), (4, size, size, 3))
  unmoved = renderer_stage.random_similarity(images, jax.random.key(1), 0.0)
  np.testing.assert_array_equal(unmoved, images)
  every = renderer_stage.random_similarity(images, jax.random.key(1), 1.0)
  assert (np.abs(np.asarray(every - images)).max(axis=(1, 2, 3)) > 0.01).all()
