"""The Pallas kernels under a mesh of several devices: one kernel per device, on its shard.

Each case runs `jaxtalk.kernels.attention` with the TPU kernels (interpreted on CPU) on the 8 CPU
devices of a data=2 fsdp=2 tensor=2 mesh, inputs laid out as the logical rules split batch and
heads, and compares the output and the q/k/v gradients with the jnp reference. The compiled
program must not all-gather: without the shard_map, XLA moves every input to one device to run
the kernel there (and on 8 simulated devices that program deadlocks, so the check comes first).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from test_kernels import _assert_close, _inputs, _value_and_grads

from jaxtalk.kernels import BlockCausalMask, FullMask, LocalAudioMask, attention
from jaxtalk.kernels.reference import reference_attention
from jaxtalk.parallel.mesh import make_mesh

RULES = (("activation_batch", ("data", "fsdp")), ("activation_heads", "tensor"))
SPLIT = P(("data", "fsdp"), None, "tensor", None)

# name: (mask, batch, q_len, k_len, heads, kv_heads, how the rules split [B, L, H, D])
CASES = {
  # Example 0 sees no key; the lengths must travel with their examples. Grouped-query heads.
  "full_key_lengths": (FullMask(jnp.array([0, 5, 16, 9])), 4, 16, 16, 4, 2, SPLIT),
  # Offsets are traced (jit arguments), as in the sampler, and replicated.
  "block_causal_sink": (
    BlockCausalMask(
      4, q_prefix=1, k_prefix=1, lookback_chunks=2, q_offset=jnp.array(3), k_offset=jnp.array(-5)
    ),
    4,
    17,
    21,
    4,
    4,
    SPLIT,
  ),
  # Batch 2 splits over data alone; one key/value head cannot split over tensor, so neither do
  # the two query heads that share it.
  "local_audio_heads_do_not_divide": (
    LocalAudioMask(2, rate_num=2, q_offset=jnp.array(1), k_offset=jnp.array(-1)),
    2,
    12,
    24,
    2,
    1,
    P("data"),
  ),
}


@pytest.mark.parametrize("case", CASES)
def test_sharded_kernel_matches_reference_without_gathering(case):
  mask, batch, q_len, k_len, heads, kv_heads, split = CASES[case]
  q, k, v, dout = _inputs(batch, q_len, k_len, heads, kv_heads, 32, jnp.float32)
  mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  kernel = functools.partial(attention, impl="pallas_tpu")
  with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
    args = [jax.device_put(x, NamedSharding(mesh, split)) for x in (q, k, v, dout)]
    compiled = _value_and_grads.lower(kernel, *args, mask).compile()
    assert "all-gather" not in compiled.as_text()
    got = compiled(*args, mask)
  _assert_close(got, _value_and_grads(reference_attention, q, k, v, dout, mask), jnp.float32)
