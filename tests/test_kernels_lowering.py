"""The kernels lower for the hardware they target, checked on CPU by exporting for cuda and tpu.

Interpret mode proves the maths; this proves that Triton (GPU) and Mosaic (TPU) accept the kernels:
block shapes, the primitives used inside them, scalar prefetch. The final device compile (Triton's
PTX, Mosaic's layouts) still happens only on the device.
"""

import functools

import jax
import jax.numpy as jnp
import pytest
from jax import export

from jaxtalk.kernels.flash import flash_attention
from jaxtalk.kernels.masks import BlockCausalMask, FullMask, LocalAudioMask
from jaxtalk.kernels.pallas_gpu import PallasGpu
from jaxtalk.kernels.pallas_tpu import PallasTpu

PLATFORMS = {"cuda": PallasGpu(), "tpu": PallasTpu()}
MASKS = {
  "full": FullMask(jnp.array([700, 1000])),
  "block_causal": BlockCausalMask(16, q_prefix=1, k_prefix=1, lookback_chunks=8),
  "audio_radius": LocalAudioMask(8, rate_num=2),
}


def _loss(backend, mask, q, k, v):
  return flash_attention(backend, q, k, v, mask).astype(jnp.float32).sum()


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("dtype,head_dim", [(jnp.bfloat16, 128), (jnp.float32, 64)])
def test_forward_and_backward_lower(platform, mask, dtype, head_dim):
  q = jax.ShapeDtypeStruct((2, 1000, 4, head_dim), dtype)
  kv = jax.ShapeDtypeStruct((2, 2000 if mask == "audio_radius" else 1000, 2, head_dim), dtype)
  grads = jax.grad(functools.partial(_loss, PLATFORMS[platform], MASKS[mask]), argnums=(0, 1, 2))
  # Triton kernels carry no serialisation guarantee; lowering is all this test needs.
  unchecked = [export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")]
  export.export(jax.jit(grads), platforms=[platform], disabled_checks=unchecked)(q, kv, kv)
