"""Model FLOPs counted from a program's jaxpr (`jaxtalk.bench.flops`), against sums done by hand and
against XLA's own count where XLA sees the whole program."""

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P
from tiny_configs import tiny_config

from jaxtalk.bench import compile as aot
from jaxtalk.bench.flops import model_flops
from jaxtalk.kernels.block_map import block_map
from jaxtalk.kernels.flash import flash_attention
from jaxtalk.kernels.masks import FullMask, LocalAudioMask
from jaxtalk.kernels.pallas_gpu import PallasGpu
from jaxtalk.kernels.pallas_tpu import PallasTpu
from jaxtalk.parallel.mesh import make_mesh


def _count(f, *args):
  return model_flops(jax.jit(f).trace(*args))


def test_a_batched_matmul_is_two_flops_per_multiply_add():
  a, b = jnp.zeros((3, 5, 7)), jnp.zeros((3, 7, 11))
  count = _count(lambda a, b: jnp.einsum("bmk,bkn->bmn", a, b), a, b)
  assert count.flops == 2 * 3 * 5 * 7 * 11 and not count.lower_bound


def test_a_grouped_convolution_counts_each_outputs_taps_as_xla_does():
  x = jnp.zeros((2, 16, 16, 8))  # NHWC
  w = jnp.zeros((3, 3, 4, 12))  # HWIO, two groups of 4 input features

  def conv(x, w):
    return jax.lax.conv_general_dilated(
      x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2
    )

  expected = 2 * (2 * 14 * 14 * 12) * (3 * 3 * 4)
  assert _count(conv, x, w).flops == expected
  assert jax.jit(conv).lower(x, w).compile().cost_analysis()["flops"] == pytest.approx(expected)


def test_a_scan_counts_its_body_once_per_step_and_a_while_loop_is_a_lower_bound():
  w = jnp.zeros((6, 8, 8))
  one_layer = 2 * 4 * 8 * 8

  def scanned(x, w):
    return jax.lax.scan(lambda h, layer: (h @ layer, None), x, w)[0]

  assert _count(scanned, jnp.zeros((4, 8)), w).flops == 6 * one_layer

  def looped(x, n):
    return jax.lax.while_loop(lambda c: c[1] < n, lambda c: (c[0] @ w[0], c[1] + 1), (x, 0))[0]

  count = _count(looped, jnp.zeros((4, 8)), 6)
  assert count.flops == one_layer and count.lower_bound


@pytest.mark.parametrize("backend", [PallasTpu(), PallasGpu()], ids=["tpu", "gpu"])
def test_the_attention_kernels_count_the_blocks_they_visit(backend):
  """Dense attention: the forward does q.k^T and p.v (4 B H Lq Lk D), the query gradient three
  such products, the key/value gradient four. A local mask: only the blocks its lists hold."""
  batch, length, heads, dim = 2, 512, 4, 128
  q = jnp.zeros((batch, length, heads, dim), jnp.bfloat16)
  full = FullMask(jnp.full((batch,), length))
  dense = 2 * batch * heads * length * length * dim
  attention = lambda q, k, mask: flash_attention(backend, q, k, k, mask).astype(jnp.float32).sum()
  assert _count(lambda q: attention(q, q, full), q).flops == 2 * dense
  gradient = _count(jax.grad(lambda q: attention(q, q, full)), q).flops
  # and delta = dout . out, one dot product of head_dim per row
  assert gradient == (2 + 3 + 4) * dense + 2 * batch * length * heads * dim

  # 2048 frames against 4096 audio frames within 4 frames of their own: a band of blocks.
  local = LocalAudioMask(4, rate_num=2)
  queries, keys = jnp.zeros((1, 2048, 1, dim)), jnp.zeros((1, 4096, 1, dim))
  block_q, block_k = backend.blocks(2048, 4096, backward=False)
  num_q, room = block_map(local, 2048, 4096, block_q, block_k).by_query.blocks.shape[1:]
  banded = _count(lambda q, k: attention(q, k, local), queries, keys).flops
  assert banded == 2 * 2 * num_q * room * block_q * block_k * dim
  assert banded <= 2 * 2 * 2048 * 4096 * dim / 2


def test_a_shard_map_counts_every_shard():
  mesh = jax.make_mesh((4,), ("d",), axis_types=(AxisType.Auto,), devices=jax.devices()[:4])
  per_shard = jax.shard_map(lambda x: x @ x.T, mesh=mesh, in_specs=P("d"), out_specs=P("d"))
  assert _count(per_shard, jnp.zeros((8, 16))).flops == 4 * (2 * 2 * 2 * 16)


def test_a_scanned_train_step_counts_as_the_unrolled_one_and_close_to_xla():
  """The motion step, its blocks scanned and unrolled; XLA sees every layer of the unrolled one."""
  counts = {}
  for scan in (True, False):
    config = tiny_config()
    config.motion.scan_layers = scan
    mesh = make_mesh(config.mesh, devices=jax.devices()[:1])
    counts[scan] = traced = aot.train_step_program(config, "motion", mesh).trace()
  assert model_flops(counts[True]) == model_flops(counts[False])
  # XLA also counts the elementwise work: 2% of this step (22% of the tiny renderer's).
  xla = traced.lower().compile().cost_analysis()["flops"]
  assert 0.95 * xla < model_flops(counts[False]).flops <= xla
