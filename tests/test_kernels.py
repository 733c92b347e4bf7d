"""Every attention kernel against the jnp reference, forward and gradients, in Pallas interpret mode.

Inputs are random normals. Shapes are small but span several query and key blocks, odd lengths
(padding), grouped-query heads, every mask kind, traced offsets and rows that see no key.
`_value_and_grads` is jitted for kernel and reference alike: one compile costs less than running
the reference's backward op by op.
Tolerances, elementwise |kernel - reference| <= atol + rtol * |reference|:
- float32: 1e-4 / 1e-4 (the kernels differ from the reference only in summation order);
- bfloat16: 3e-2 / 3e-2 (both round the probabilities to bfloat16 before the value product,
  at different points of the online softmax).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk.kernels.flash import flash_attention
from jaxtalk.kernels.masks import BlockCausalMask, FullMask, LocalAudioMask
from jaxtalk.kernels.pallas_gpu import PallasGpu
from jaxtalk.kernels.pallas_tpu import PallasTpu
from jaxtalk.kernels.reference import reference_attention

TOLERANCE = {jnp.float32: 1e-4, jnp.bfloat16: 3e-2}

# Small blocks so a ~100-token sequence spans several of them. TPU key blocks are one lane tile.
BACKENDS = {
  "pallas_gpu": PallasGpu(block_q=32, block_k=16, block_q_bwd=16, block_k_bwd=32, interpret=True),
  "pallas_tpu": PallasTpu(block_q=32, block_k=128, block_q_bwd=16, block_k_bwd=128, interpret=True),
}

# name: (mask, batch, q_len, k_len, heads, kv_heads, head_dim, dtype)
CASES = {
  "full_odd_lengths": (FullMask(), 1, 37, 141, 2, 2, 64, jnp.float32),
  # Example 0 has no keys at all: its rows must come out as zeros, with zero gradients.
  "full_key_padding": (FullMask(jnp.array([0, 29, 150])), 3, 45, 150, 2, 1, 128, jnp.bfloat16),
  "block_causal_sink": (
    BlockCausalMask(8, q_prefix=1, k_prefix=1, lookback_chunks=3),
    1,
    97,
    97,
    2,
    2,
    64,
    jnp.bfloat16,
  ),
  "block_causal_gqa": (BlockCausalMask(5, lookback_chunks=None), 1, 70, 70, 4, 1, 128, jnp.float32),
  "audio_radius": (LocalAudioMask(4, rate_num=2), 1, 60, 135, 2, 2, 128, jnp.bfloat16),
  # TPU: each query block reaches 2 of the 4 key blocks, each key block 6 of 16 query blocks, so
  # the grid's inner axis is shorter than the lists of the whole mask.
  "audio_long": (LocalAudioMask(4, rate_num=2), 1, 256, 512, 1, 1, 64, jnp.float32),
  "local_audio_padded": (
    LocalAudioMask(
      3, rate_num=5, rate_den=2, q_offset=3, k_offset=-2, kv_lengths=jnp.array([90, 160])
    ),
    2,
    50,
    160,
    2,
    2,
    64,
    jnp.float32,
  ),
}


def _inputs(batch, q_len, k_len, heads, kv_heads, head_dim, dtype, seed=0):
  keys = jax.random.split(jax.random.key(seed), 4)
  normal = lambda key, length, h: jax.random.normal(key, (batch, length, h, head_dim)).astype(dtype)
  return (
    normal(keys[0], q_len, heads),
    normal(keys[1], k_len, kv_heads),
    normal(keys[2], k_len, kv_heads),
    normal(keys[3], q_len, heads),
  )


@functools.partial(jax.jit, static_argnums=0)
def _value_and_grads(attend, q, k, v, dout, mask):
  out, vjp = jax.vjp(lambda *qkv: attend(*qkv, mask), q, k, v)
  return (out, *vjp(dout))


def _assert_close(got, want, dtype):
  tol = TOLERANCE[dtype]
  for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
    assert g.dtype == w.dtype, name
    np.testing.assert_allclose(
      np.asarray(g, np.float32), np.asarray(w, np.float32), atol=tol, rtol=tol, err_msg=name
    )


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_kernel_matches_reference(backend, case):
  mask, *shape, dtype = CASES[case]
  q, k, v, dout = _inputs(*shape, dtype)
  kernel = functools.partial(flash_attention, BACKENDS[backend])
  _assert_close(
    _value_and_grads(kernel, q, k, v, dout, mask),
    _value_and_grads(reference_attention, q, k, v, dout, mask),
    dtype,
  )


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernel_follows_traced_offsets(backend):
  """The rolling sampler's mask: offsets traced inside a loop, a cache whose first slots are empty.

  At the first advance (frame offset -8) the newest queries' earliest frames are negative: those
  queries see only the sink, and the cache slots before frame 0 are hidden from everyone.
  """
  q, k, v, dout = _inputs(1, 8, 1 + 24 + 8, 2, 2, 64, jnp.float32, seed=1)

  def both(frame_offset):
    mask = BlockCausalMask(
      4, k_prefix=1, lookback_chunks=6, q_offset=frame_offset, k_offset=frame_offset - 24
    )
    got = _value_and_grads(
      functools.partial(flash_attention, BACKENDS[backend]), q, k, v, dout, mask
    )
    return got, _value_and_grads(reference_attention, q, k, v, dout, mask)

  def scan_body(_, frame_offset):
    return None, both(frame_offset)

  _, (got, want) = jax.lax.scan(scan_body, None, jnp.array([-8, 0, 16]))
  _assert_close(got, want, jnp.float32)


def test_tpu_grid_walks_only_the_key_blocks_a_local_mask_reaches():
  """2048 video frames against 4096 audio frames (2 per frame), radius 4: grids of (batch, heads,
  outer blocks, inner steps) whose inner axis is what one outer block can reach, not all blocks.

  Forward (32-row query blocks, 128-key blocks): 32 frames have centres over 63 audio frames, so
  they see 63 + 2 * 4 + 1 = 71 keys, at most 2 key blocks of the 32. Query gradient (16 rows):
  39 keys, 2 blocks. Key/value gradient: 128 keys are seen by the frames whose centre is one of
  128 + 2 * 4 values, 68 frames, at most 6 of the 128 query blocks of 16.
  """
  q = jax.ShapeDtypeStruct((1, 2048, 2, 64), jnp.float32)
  kv = jax.ShapeDtypeStruct((1, 4096, 2, 64), jnp.float32)

  def loss(q, k, v):
    return flash_attention(BACKENDS["pallas_tpu"], q, k, v, LocalAudioMask(4, rate_num=2)).sum()

  jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1, 2)))(q, kv, kv).jaxpr
  grids = [
    eqn.params["grid_mapping"].grid for eqn in jaxpr.eqns if eqn.primitive.name == "pallas_call"
  ]
  assert grids == [(1, 2, 64, 2), (1, 2, 128, 2), (1, 2, 32, 6)]
