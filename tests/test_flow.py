"""Rectified-flow utilities: path, targets, time sampling, loss and the ODE samplers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk.diffusion import flow


def test_interpolate_goes_from_noise_at_t0_to_data_at_t1():
  data = jnp.full((2, 3, 4), 2.0)
  noise = jnp.full((2, 3, 4), -1.0)
  np.testing.assert_allclose(flow.interpolate(data, noise, jnp.zeros(2)), noise)
  np.testing.assert_allclose(flow.interpolate(data, noise, jnp.ones(2)), data)
  np.testing.assert_allclose(
    flow.interpolate(data, noise, jnp.array([0.25, 0.5]))[:, 0, 0], [-0.25, 0.5]
  )


def test_time_with_more_axes_sets_one_level_per_frame():
  data, noise = jnp.ones((2, 3, 4)), jnp.zeros((2, 3, 4))
  t = jnp.array([[0.0, 0.5, 1.0], [1.0, 0.0, 0.25]])
  np.testing.assert_allclose(
    flow.interpolate(data, noise, t), jnp.broadcast_to(t[..., None], (2, 3, 4))
  )


def test_velocity_target_is_the_time_derivative_of_the_path():
  rng_data, rng_noise = jax.random.split(jax.random.key(0))
  data, noise = jax.random.normal(rng_data, (3, 5)), jax.random.normal(rng_noise, (3, 5))
  t = jnp.array([0.1, 0.5, 0.9])
  _, dx_dt = jax.jvp(lambda tt: flow.interpolate(data, noise, tt), (t,), (jnp.ones(3),))
  np.testing.assert_allclose(dx_dt, flow.velocity_target(data, noise), rtol=1e-6)


def test_velocity_from_a_perfect_data_prediction_is_the_target_away_from_t1():
  rng_data, rng_noise = jax.random.split(jax.random.key(5))
  data, noise = jax.random.normal(rng_data, (3, 4)), jax.random.normal(rng_noise, (3, 4))
  t = jnp.array([0.0, 0.5, 0.9])
  x_t = flow.interpolate(data, noise, t)
  np.testing.assert_allclose(
    flow.velocity_from_data(data, x_t, t), flow.velocity_target(data, noise), rtol=1e-4, atol=1e-4
  )
  # Near t = 1 the gap 1 - t is floored at min_gap, so an error in the prediction is amplified
  # at most 1 / min_gap times.
  t_end = jnp.full((3,), 0.999)
  x_end = flow.interpolate(data, noise, t_end)
  np.testing.assert_allclose(
    flow.velocity_from_data(data + 0.01, x_end, t_end, min_gap=0.05),
    (data + 0.01 - x_end) / 0.05,
    rtol=1e-5,
  )


def test_sample_time_schedules():
  logit_normal = flow.sample_time(jax.random.key(1), (20_000,))
  uniform = flow.sample_time(jax.random.key(1), (20_000,), "uniform")
  for t in (logit_normal, uniform):
    assert t.shape == (20_000,)
    assert float(t.min()) > 0 and float(t.max()) < 1
  assert abs(float(jnp.mean(uniform)) - 0.5) < 0.01
  logits = jnp.log(logit_normal) - jnp.log1p(-logit_normal)
  assert abs(float(jnp.mean(logits))) < 0.03 and abs(float(jnp.std(logits)) - 1.0) < 0.03
  shifted = flow.sample_time(jax.random.key(1), (20_000,), mean=1.0, std=0.5)
  assert abs(float(jnp.median(shifted)) - float(jax.nn.sigmoid(1.0))) < 0.01
  with pytest.raises(ValueError, match="unknown time schedule"):
    flow.sample_time(jax.random.key(1), (3,), "cosine")


def test_loss_is_the_mse_to_the_velocity_target_and_weights_average_kept_elements():
  data = jnp.array([[1.0, 2.0], [3.0, 4.0]])
  noise = jnp.zeros_like(data)
  assert float(flow.flow_matching_loss(data, data, noise)) == 0.0
  pred = data + jnp.array([[1.0, 1.0], [3.0, 3.0]])
  assert float(flow.flow_matching_loss(pred, data, noise)) == pytest.approx(5.0)
  keep_first_row = jnp.array([[1.0], [0.0]])
  assert float(flow.flow_matching_loss(pred, data, noise, keep_first_row)) == pytest.approx(1.0)
  assert flow.flow_matching_loss(pred.astype(jnp.bfloat16), data, noise).dtype == jnp.float32


def test_time_grid_runs_evenly_from_noise_to_data():
  np.testing.assert_allclose(flow.time_grid(4), [0.0, 0.25, 0.5, 0.75, 1.0], atol=1e-7)


def _gaussian_flow(mean, std):
  """Exact velocity field and end point of the flow from N(0, 1) to N(mean, std^2).

  x_t has law N(t * mean, sigma_t^2), sigma_t^2 = (1 - t)^2 + t^2 std^2; the flow keeps each
  sample's standardised coordinate, so noise z ends at mean + std * z.
  """

  def velocity(x, t):
    t = t[:, None]
    sigma = jnp.sqrt((1 - t) ** 2 + (t * std) ** 2)
    dsigma = (t * std**2 - (1 - t)) / sigma
    return mean + dsigma / sigma * (x - t * mean)

  return velocity, lambda z: mean + std * z


def test_euler_converges_to_the_exact_flow_of_a_gaussian_at_first_order():
  velocity, exact = _gaussian_flow(mean=3.0, std=0.2)
  noise = jax.random.normal(jax.random.key(2), (16, 4))
  errors = [
    float(jnp.max(jnp.abs(flow.euler_sample(velocity, noise, n) - exact(noise))))
    for n in (16, 32, 64)
  ]
  assert errors[2] < 0.03
  for coarse, fine in zip(errors, errors[1:]):  # halving the step halves the error
    assert coarse / fine > 0.85 * 2


def test_euler_lands_exactly_on_a_single_data_point():
  # With one data point c the field is (c - x) / (1 - t): the last Euler step lands on c.
  target = jnp.array([0.5, -2.0, 1.0])
  velocity = lambda x, t: (target - x) / (1 - t[:, None])
  noise = jax.random.normal(jax.random.key(4), (2, 3))
  np.testing.assert_allclose(
    flow.euler_sample(velocity, noise, 5), jnp.broadcast_to(target, (2, 3)), rtol=1e-5, atol=1e-5
  )


def test_euler_traces_the_model_once_whatever_the_number_of_steps():
  calls = []

  def velocity(x, t):
    calls.append(t.shape)
    return -x

  jax.jit(lambda z: flow.euler_sample(velocity, z, 50))(jnp.ones((3, 2)))
  assert calls == [(3,)]
