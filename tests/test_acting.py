"""Acting controls: the per-frame vector read from clip meta, checked controls, dropout by group,
and a tiny motion model trained on toy latents that the controls steer the promised way."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxtalk.data.acting import BLINK_RATE_SCALE, ActingLayout
from jaxtalk.diffusion import flow
from jaxtalk.errors import UserError
from jaxtalk.inference.motion_sampler import RollingSchedule, padded_audio_frames, sample_motion
from jaxtalk.models.motion_transformer import MotionTransformer
from jaxtalk.stages.motion_stage import drop_acting

LAYOUT = ActingLayout(("calm", "glad"))


def test_track_follows_the_segments_and_flags_what_is_given():
  meta = {
    "acting": {
      "segments": [
        {"start": 0, "emotion": "glad", "intensity": 0.5, "blink_rate": 15.0},
        {"start": 3, "emotion": "calm"},
      ],
      "pose_amplitude": 0.0,
    }
  }
  track = LAYOUT.track(meta, 5)
  np.testing.assert_allclose(track[0], [0, 0.5, 1, 0, 1, 15 / BLINK_RATE_SCALE, 1])
  np.testing.assert_allclose(track[4], [1, 0, 1, 0, 1, 0, 0])  # no blink rate given there
  assert np.all(LAYOUT.track({}, 4) == 0)  # unlabelled clips: nothing given
  assert np.all(LAYOUT.track({"acting": {"segments": [{"start": 0, "emotion": "x"}]}}, 2) == 0)
  np.testing.assert_allclose(
    LAYOUT.vector("glad", 0.5, pose_amplitude=0.0, blink_rate=15.0), track[0]
  )
  assert np.all(LAYOUT.vector() == 0)


@pytest.mark.parametrize(
  "controls, message",
  [
    (dict(emotion="bored"), "unknown emotion 'bored'; this model knows auto, calm, glad"),
    (dict(emotion="glad", intensity=2.0), "emotion intensity is 2.0"),
    (dict(pose_amplitude=-0.5), "pose amplitude is -0.5"),
    (dict(blink_rate=61.0), "blink rate is 61.0 a minute"),
  ],
)
def test_out_of_range_controls_are_one_line_errors(controls, message):
  with pytest.raises(UserError, match=message):
    LAYOUT.vector(**controls)


def test_dropout_zeroes_whole_groups_per_example():
  acting = jnp.broadcast_to(
    jnp.asarray(LAYOUT.vector("glad", 1.0, 1.5, 20.0)), (4000, 3, LAYOUT.width)
  )
  for all_rate, all_gone in ((0.0, 0.3**3), (0.2, 0.2 + 0.8 * 0.3**3)):
    dropped = np.asarray(drop_acting(acting, LAYOUT, 0.3, all_rate, jax.random.key(0)))
    for group in (LAYOUT.emotion_group, LAYOUT.pose_group, LAYOUT.blink_group):
      part = dropped[:, :, group]
      gone = np.all(part == 0, axis=(1, 2))
      kept = np.all(part == np.asarray(acting)[:, :, group], axis=(1, 2))
      expected = all_rate + (1 - all_rate) * 0.3
      assert np.all(gone | kept) and abs(gone.mean() - expected) < 0.04
    # Groups drop independently, and all together at all_rate besides.
    assert abs(np.mean(np.all(dropped == 0, axis=(1, 2))) - all_gone) < 0.03


# ------------------------------------------------------------------ a tiny model, steered
LATENT, AUDIO_DIM, FRAMES = 4, 8, 8
# Toy latents where each control has a known effect: dim 0 sways with the pose amplitude, dim 1
# spikes at the blink rate, dims 2-3 sit at the emotion's offset times its intensity.
_EMOTION_OFFSETS = np.array([[0.0, 1.5], [1.5, 0.0]])


def _toy_batch(rng: np.random.Generator, batch: int):
  acting = np.zeros((batch, FRAMES, LAYOUT.width), np.float32)
  latents = np.zeros((batch, FRAMES, LATENT), np.float32)
  for b in range(batch):
    emotion, intensity = rng.integers(2), rng.uniform(0.3, 1.0)
    amplitude, rate = rng.choice([0.0, 1.0, 2.0]), rng.choice([0.0, 30.0, 60.0])
    acting[b, :] = LAYOUT.vector(LAYOUT.emotions[emotion], intensity, amplitude, rate)
    sway = np.sin(np.arange(FRAMES) * 0.8 + rng.uniform(0, 2 * np.pi))
    latents[b, :, 0] = amplitude * sway
    latents[b, :, 1] = rng.uniform(size=FRAMES) < rate / 150.0
    latents[b, :, 2:] = _EMOTION_OFFSETS[emotion] * intensity
  return latents, acting


@pytest.fixture(scope="module")
def trained_toy():
  model = MotionTransformer(
    latent_dim=LATENT,
    dim=48,
    depth=2,
    heads=2,
    mlp_ratio=2.0,
    chunk_size=4,
    lookback_chunks=2,
    audio_radius=1,
    rope_fraction=0.5,
    scan_layers=True,
    remat="none",
    dtype=jnp.float32,
    emotions=LAYOUT.emotions,
  )
  batch, audio = 64, jnp.zeros((64, FRAMES + 2, AUDIO_DIM))
  params = nn.unbox(
    model.init(
      jax.random.key(0),
      jnp.zeros((1, FRAMES, LATENT)),
      jnp.zeros((1, FRAMES)),
      audio[:1],
      reference=jnp.zeros((1, LATENT)),
      audio_offset=-1,
    )
  )["params"]
  optimizer = optax.adam(3e-3)

  @jax.jit
  def step(params, opt_state, latents, acting, rng):
    def loss(params):
      t_rng, n_rng, d_rng = jax.random.split(rng, 3)
      t = jax.random.uniform(t_rng, latents.shape[:2])
      noise = jax.random.normal(n_rng, latents.shape)
      velocity, _ = model.apply(
        {"params": params},
        flow.interpolate(latents, noise, t),
        t,
        audio,
        acting=drop_acting(acting, LAYOUT, 0.3, 0.2, d_rng),
        reference=jnp.zeros((batch, LATENT)),
        audio_offset=-1,
      )
      return flow.flow_matching_loss(velocity, latents, noise)

    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, value

  data_rng, opt_state = np.random.default_rng(0), optimizer.init(params)
  for i in range(600):
    latents, acting = _toy_batch(data_rng, batch)
    params, opt_state, _ = step(params, opt_state, latents, acting, jax.random.key(i))
  return model, params


def _sample(trained_toy, emotion_cfg_scale=1.0, **controls):
  model, params = trained_toy
  num_frames, rows = 32, 16
  schedule = RollingSchedule(4, 2, emotion_guided=emotion_cfg_scale != 1.0)
  front, back = padded_audio_frames(model, schedule, num_frames)
  acting = jnp.broadcast_to(jnp.asarray(LAYOUT.vector(**controls)), (rows, LAYOUT.width))
  return np.asarray(
    sample_motion(
      model,
      params,
      jnp.zeros((rows, front + num_frames + back, AUDIO_DIM)),
      jnp.zeros((rows, LATENT)),
      jax.random.key(1),
      schedule,
      num_frames,
      acting,
      guidance=(1.0, emotion_cfg_scale),
    )
  )


def test_pose_amplitude_scales_the_sway(trained_toy):
  sway = {a: _sample(trained_toy, pose_amplitude=a)[:, :, 0].std(axis=1).mean() for a in (0, 1, 2)}
  assert sway[0] < 0.3 * sway[1] and sway[2] > 1.4 * sway[1]


def test_blink_rate_sets_how_often_it_spikes(trained_toy):
  spikes = {r: np.mean(_sample(trained_toy, blink_rate=r)[:, :, 1] > 0.5) for r in (0, 30, 60)}
  assert spikes[0] < 0.5 * spikes[30] and spikes[30] < spikes[60]


def test_emotion_label_and_intensity_move_its_offset(trained_toy):
  glad = {
    i: _sample(trained_toy, 2.0, emotion="glad", intensity=i)[:, :, 2].mean()
    for i in (0.3, 0.65, 1.0)
  }
  calm = _sample(trained_toy, 2.0, emotion="calm")[:, :, 2].mean()
  assert calm < glad[0.3] < glad[0.65] < glad[1.0]
