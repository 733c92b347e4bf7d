"""The stage-1 loss terms that make the motion latent carry motion."""

import jax.numpy as jnp
import numpy as np

from jaxtalk.diffusion import flow
from jaxtalk.stages.renderer_stage import change_weights, latent_spread_penalty


def test_change_weights_boost_the_changed_pixels_and_a_one_pixel_border():
  reference = jnp.full((1, 9, 9, 3), -0.5)
  target = reference.at[0, 4, 4].set(0.5).at[0, 0, 8].add(0.01)  # one moved pixel, one noisy one
  weights = np.asarray(change_weights(target, reference, boost=4.0))[0, :, :, 0]
  expected = np.ones((9, 9))
  expected[3:6, 3:6] = 5.0
  np.testing.assert_array_equal(weights, expected)


def test_weighted_mse_is_the_weighted_mean_of_squared_errors():
  pred, target = jnp.array([1.0, 2.0, 4.0]), jnp.array([0.0, 0.0, 0.0])
  np.testing.assert_allclose(flow.weighted_mse(pred, target), 7.0)
  np.testing.assert_allclose(
    flow.weighted_mse(pred, target, jnp.array([1.0, 0.0, 3.0])), (1.0 + 3 * 16.0) / 4.0
  )


def test_spread_penalty_is_zero_for_moving_latents_and_positive_for_collapsed_ones():
  rng = np.random.default_rng(0)
  reference = jnp.asarray(rng.normal(size=(64, 4, 8)), jnp.float32)
  moving = reference + jnp.asarray(rng.normal(size=(64, 4, 8)), jnp.float32)
  assert float(latent_spread_penalty(moving, reference, min_spread=0.5)) == 0.0
  # A latent that ignores the frame (target = reference) has no spread: the penalty is the margin.
  collapsed = float(latent_spread_penalty(reference, reference, min_spread=0.5))
  np.testing.assert_allclose(collapsed, 0.5 - 1e-2, rtol=1e-5)
