"""Rectified flow (flow matching with straight paths): training targets and ODE samplers.

Convention, used by every model in jaxtalk:

    x_t = (1 - t) * noise + t * data,     t in [0, 1]
    t = 0 is pure noise, t = 1 is data; the model predicts the velocity dx_t/dt = data - noise.

Sampling integrates dx/dt = v(x, t) from t = 0 (a Gaussian draw) to t = 1. Time arrays broadcast
against the data from the leading axes: t of shape [B] noises a batch [B, ...] one level per
example, t of shape [B, T] noises a sequence [B, T, D] one level per frame (diffusion forcing).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]


def _expand(t: jax.Array, ndim: int) -> jax.Array:
  """Append trailing axes to `t` so it broadcasts against an array with `ndim` axes."""
  t = jnp.asarray(t)
  return t.reshape(t.shape + (1,) * (ndim - t.ndim))


def interpolate(data: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
  """The point x_t on the straight path from `noise` (t = 0) to `data` (t = 1)."""
  t = _expand(t, data.ndim).astype(data.dtype)
  return (1 - t) * noise + t * data


def velocity_target(data: jax.Array, noise: jax.Array) -> jax.Array:
  """What the model learns to predict at every t: the constant path velocity data - noise."""
  return data - noise


def velocity_from_data(
  data_pred: jax.Array, x_t: jax.Array, t: jax.Array, min_gap: float = 0.05
) -> jax.Array:
  """The velocity implied by a prediction of the clean data: (data - x_t) / (1 - t).

  For models that predict the clean sample ("x-prediction") rather than the velocity. A clean
  image is smooth and low-dimensional, so it passes through a narrow network (large patches, few
  channels) that cannot carry the per-pixel noise a velocity contains (Li & He, "Back to Basics:
  Let Denoising Generative Models Denoise", 2025). `min_gap` keeps 1 - t away from zero.
  """
  gap = jnp.maximum(1.0 - _expand(t, x_t.ndim), min_gap).astype(x_t.dtype)
  return (data_pred.astype(x_t.dtype) - x_t) / gap


def sample_time(
  rng: jax.Array,
  shape: tuple[int, ...],
  schedule: str = "logit_normal",
  *,
  mean: float = 0.0,
  std: float = 1.0,
) -> jax.Array:
  """Training flow times in (0, 1).

  "logit_normal": sigmoid of N(mean, std^2), as in SD3; it spends most samples at intermediate t,
  where the velocity is hardest to predict, and few near the trivial ends. "uniform": U(0, 1).
  """
  if schedule == "logit_normal":
    return jax.nn.sigmoid(mean + std * jax.random.normal(rng, shape))
  if schedule == "uniform":
    return jax.random.uniform(rng, shape)
  raise ValueError(f"unknown time schedule {schedule!r}; use 'logit_normal' or 'uniform'")


def flow_matching_loss(
  pred_velocity: jax.Array, data: jax.Array, noise: jax.Array, weights: jax.Array | None = None
) -> jax.Array:
  """Mean squared error between predicted and target velocity, in float32.

  `weights` (broadcastable to the data, e.g. [B, T, 1] per frame) gives the weighted mean
  sum(w * err) / sum(w), so a 0/1 mask averages over the kept elements only.
  """
  return weighted_mse(pred_velocity, velocity_target(data, noise), weights)


def weighted_mse(pred: jax.Array, target: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """Mean squared error in float32; with `weights`, sum(w * err) / sum(w) (see flow_matching_loss)."""
  error = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32))
  if weights is None:
    return jnp.mean(error)
  weights = jnp.broadcast_to(jnp.asarray(weights, jnp.float32), error.shape)
  return jnp.sum(weights * error) / jnp.maximum(jnp.sum(weights), 1e-8)


def time_grid(num_steps: int) -> jax.Array:
  """`num_steps + 1` evenly spaced sampling times from 0 (noise) to 1 (data)."""
  return jnp.linspace(0.0, 1.0, num_steps + 1, dtype=jnp.float32)


def euler_sample(velocity_fn: VelocityFn, noise: jax.Array, num_steps: int) -> jax.Array:
  """Integrate dx/dt = velocity_fn(x, t) from `noise` at t = 0 to t = 1 with Euler steps.

  `velocity_fn` gets x and t of shape [batch] (= noise.shape[:1]). One `lax.fori_loop`, so the
  model is traced once whatever `num_steps`.
  """
  times = time_grid(num_steps)

  def step(i, x):
    t, t_next = times[i], times[i + 1]
    batch_t = jnp.full(noise.shape[:1], t, jnp.float32)
    return x + (t_next - t).astype(x.dtype) * velocity_fn(x, batch_t).astype(x.dtype)

  return jax.lax.fori_loop(0, num_steps, step, noise)
