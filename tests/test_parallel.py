"""Mesh construction and logical-axis shardings on the 8 simulated CPU devices; the motion
transformer sharded as the config's rules say."""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from tiny_configs import tiny_config

from jaxtalk.bench.model import random_params
from jaxtalk.config import DEFAULT_AXIS_RULES
from jaxtalk.errors import UserError
from jaxtalk.models.factory import Models
from jaxtalk.models.layers import HEADS, HIDDEN, TOKENS
from jaxtalk.parallel.mesh import make_mesh
from jaxtalk.parallel.sharding import (
  batch_sharding,
  global_batch,
  param_shardings,
  strip_partitioning,
)

RULES = (
  ("batch", ("data", "fsdp")),
  ("embed", "fsdp"),
  ("mlp", "tensor"),
  ("vocab", "tensor"),
  ("kv", None),
)


def _mesh_shape(mesh):
  return tuple(mesh.shape[name] for name in ("data", "fsdp", "tensor"))


@pytest.mark.parametrize(
  "sizes, shape",
  [
    ({"data": -1, "fsdp": 1, "tensor": 1}, (8, 1, 1)),
    ({"data": 2, "fsdp": 2, "tensor": 2}, (2, 2, 2)),
    ({"data": -1, "tensor": 2}, (4, 1, 2)),
    ({"fsdp": -1}, (1, 8, 1)),
  ],
)
def test_mesh_sizes(sizes, shape):
  mesh = make_mesh(sizes)
  assert mesh.axis_names == ("data", "fsdp", "tensor")
  assert _mesh_shape(mesh) == shape
  assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_mesh_on_given_devices():
  assert _mesh_shape(make_mesh({"data": -1}, devices=jax.devices()[:1])) == (1, 1, 1)


@pytest.mark.parametrize(
  "sizes, message",
  [
    ({"data": -1, "tensor": 3}, "needs a multiple of 3 devices"),
    ({"data": 3}, "uses 3 devices but 8 are available"),
    ({"data": 2, "fsdp": 2}, "uses 4 devices"),
    ({"data": -1, "fsdp": -1}, "more than one"),
    ({"pipeline": 2}, "unknown mesh axis"),
    ({"data": 0}, "below 1"),
  ],
)
def test_mesh_errors(sizes, message):
  with pytest.raises(UserError, match=message):
    make_mesh(sizes)


class _Annotated(nn.Module):
  """Parameters covering each case of the rule table."""

  @nn.compact
  def __call__(self, x):
    def param(name, shape, names):
      return self.param(name, nn.with_logical_partitioning(nn.initializers.zeros, names), shape)

    param("kernel", (8, 16), ("embed", "mlp"))
    param("bias", (16,), ("mlp",))
    param("odd_vocab", (3, 16), ("vocab", "embed"))  # 3 is not divisible by tensor=2
    param("both_tensor", (16, 16), ("mlp", "vocab"))  # a mesh axis can split only one dim
    param("unknown_and_none", (4, 4), ("mystery", None))
    param("kv_cache", (4, 4), ("kv", "kv"))
    self.param("plain", nn.initializers.zeros, (4, 4))
    self.param("mesh_named", nn.with_partitioning(nn.initializers.zeros, ("tensor", None)), (4, 4))
    return x


def test_param_shardings_follow_rules():
  mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  abstract = jax.eval_shape(_Annotated().init, jax.random.key(0), jnp.zeros(()))["params"]
  specs = jax.tree.map(lambda s: s.spec, param_shardings(abstract, mesh, RULES))
  assert specs == {
    "kernel": P("fsdp", "tensor"),
    "bias": P("tensor"),
    "odd_vocab": P(None, "fsdp"),
    "both_tensor": P("tensor", None),
    "unknown_and_none": P(None, None),
    "kv_cache": P(None, None),
    "plain": P(),
    "mesh_named": P("tensor", None),
  }
  assert all(s.mesh == mesh for s in jax.tree.leaves(param_shardings(abstract, mesh, RULES)))


def test_strip_partitioning_adds_no_constraint_under_a_global_mesh():
  mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  abstract = jax.eval_shape(_Annotated().init, jax.random.key(0), jnp.zeros(()))["params"]
  # flax's own unbox would apply a sharding constraint here, which fails on abstract values.
  with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
    plain = strip_partitioning(abstract)
  assert plain["kernel"] == jax.ShapeDtypeStruct((8, 16), jnp.float32)
  assert plain["plain"] == jax.ShapeDtypeStruct((4, 4), jnp.float32)


def test_rules_as_json_lists_and_partial_axis_fallback():
  mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  box = nn.LogicallyPartitioned(jax.ShapeDtypeStruct((2, 8), jnp.float32), ("batch", "embed"))
  json_rules = [["batch", ["data", "fsdp"]], ["embed", "fsdp"]]
  # Dim 0 (size 2) keeps only "data" of ("data", "fsdp"); dim 1 may then take "fsdp".
  assert param_shardings(box, mesh, json_rules).spec == P("data", "fsdp")


def test_global_batch_splits_leading_dim_over_data_and_fsdp():
  mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  local = {"x": np.arange(24, dtype=np.float32).reshape(8, 3), "label": np.arange(8)}
  batch = global_batch(local, batch_sharding(mesh))
  assert batch["x"].sharding.spec == P(("data", "fsdp"))
  assert batch["x"].addressable_shards[0].data.shape == (2, 3)
  np.testing.assert_array_equal(batch["x"], local["x"])
  np.testing.assert_array_equal(batch["label"], local["label"])


def test_global_batch_rejects_indivisible_batch():
  mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  with pytest.raises(UserError, match="not divisible by the 4 batch shards"):
    global_batch({"x": np.zeros((6, 3))}, batch_sharding(mesh))


def test_activation_and_weight_names_resolve_apart():
  """An activation's width stays whole while a weight's is split over fsdp (one name would do both)."""
  resolve = lambda names: nn.logical_to_mesh_axes(names, DEFAULT_AXIS_RULES)
  assert resolve(TOKENS) == P(("data", "fsdp"), None, None)
  assert resolve(HEADS) == P(("data", "fsdp"), None, "tensor", None)
  assert resolve(HIDDEN) == P(("data", "fsdp"), None, "tensor")
  assert resolve(("embed", "mlp")) == P("fsdp", "tensor")


def test_motion_transformer_shards_whole_heads_and_computes_as_on_one_device():
  config = tiny_config()
  mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  models = Models.from_config(config)
  model = models.motion
  boxed = jax.eval_shape(lambda rng: models.init(rng, ("motion",)), jax.random.key(0))["motion"]
  shardings = param_shardings(boxed, mesh, DEFAULT_AXIS_RULES)
  specs = flax.traverse_util.flatten_dict(jax.tree.map(lambda s: s.spec, shardings), sep="/")
  # The stacked layers replicated; q/k/v [embed, heads, head_dim] in, [heads, head_dim, embed] out.
  assert specs["blocks/qkv/kernel"] == P(None, "fsdp", None, "tensor", None)
  assert specs["blocks/attn_out/kernel"] == P(None, "tensor", None, "fsdp")
  for projection in ("query", "key", "value"):
    assert specs[f"blocks/audio_attention/{projection}/kernel"] == P(None, "fsdp", "tensor", None)
  assert specs["blocks/audio_attention/out/kernel"] == P(None, "tensor", None, "fsdp")

  params = random_params(config)["motion"]
  batch_size, frames, margin = 4, 2 * model.chunk_size, models.audio_margin_frames
  rng = np.random.default_rng(0)
  normal = lambda *shape: rng.standard_normal(shape).astype(np.float32)
  batch = {
    "latents": normal(batch_size, frames, models.latent_dim),
    "t": rng.uniform(size=(batch_size, frames)).astype(np.float32),
    "audio": normal(batch_size, frames + 2 * margin, models.audio_encoder.dim),
    "reference": normal(batch_size, models.latent_dim),
    "target": normal(batch_size, frames, models.latent_dim),
  }

  def loss(params, batch):
    velocity, _ = model.apply(
      {"params": params},
      batch["latents"],
      batch["t"],
      batch["audio"],
      reference=batch["reference"],
      audio_offset=-margin,
    )
    return jnp.mean(jnp.square(velocity - batch["target"]))

  loss_and_grad = jax.value_and_grad(loss)
  single = jax.jit(loss_and_grad)(params, batch)
  # As the training loop runs it: activations constrained by their logical names.
  with jax.set_mesh(mesh), nn.logical_axis_rules(DEFAULT_AXIS_RULES):
    sharded = jax.jit(loss_and_grad, in_shardings=(shardings, batch_sharding(mesh)))(params, batch)
  for got, want in zip(jax.tree.leaves(sharded), jax.tree.leaves(single)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
