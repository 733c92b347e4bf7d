"""The single attention entry point used by every jaxtalk model.

`attention(q, k, v, mask, impl=...)` takes [batch, length, heads, head_dim] tensors (Flax layout)
and a mask object from `masks.py`. `impl` names an implementation:

- "reference": the plain `jnp` path (`reference.py`), any backend, the source of truth;
- "pallas_gpu" / "pallas_tpu": the block-skipping flash kernels (`pallas_gpu.py`, `pallas_tpu.py`);
  on a backend without that hardware they run in Pallas interpret mode, which is slow and meant
  for tests and for checking the benchmark script;
- "cudnn": `jax.nn.dot_product_attention`, for the masks cuDNN expresses natively;
- "auto" (default): the fastest of these that supports the call; where none does, the reference,
  with the reason logged once.
"""

from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp

from jaxtalk.kernels import cudnn, flash
from jaxtalk.kernels.masks import FullMask, Mask
from jaxtalk.kernels.pallas_gpu import PallasGpu
from jaxtalk.kernels.pallas_tpu import PallasTpu
from jaxtalk.kernels.reference import reference_attention

IMPLEMENTATIONS = ("auto", "reference", "pallas_gpu", "pallas_tpu", "cudnn")
_KERNEL_DTYPES = (jnp.float32, jnp.bfloat16)
_MAX_KERNEL_HEAD_DIM = 256  # past this one query block's accumulator no longer fits on chip
_log = logging.getLogger(__name__)


def attention(
  q: jax.Array, k: jax.Array, v: jax.Array, mask: Mask | None = None, *, impl: str = "auto"
) -> jax.Array:
  """Softmax attention; grouped-query when k/v have fewer heads than q.

  Scores and softmax run in float32 whatever the input dtype. A query that sees no key at all
  returns zeros instead of NaN (it happens for padding rows).
  """
  heads, kv_heads = q.shape[2], k.shape[2]
  if heads % kv_heads:
    raise ValueError(f"{heads} query heads cannot share {kv_heads} key/value heads")
  if impl not in IMPLEMENTATIONS:
    raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, not {impl!r}")
  mask = mask if mask is not None else FullMask()
  if impl == "auto":
    impl, reason = choose(q, mask)
    if reason:
      _log_once(f"attention falls back to the jnp reference: {reason}")
  if impl == "reference":
    return reference_attention(q, k, v, mask)
  if impl == "cudnn":
    return cudnn.cudnn_attention(q, k, v, mask)
  return flash.flash_attention(_backend(impl, jax.default_backend()), q, k, v, mask)


def choose(q: jax.Array, mask: Mask) -> tuple[str, str | None]:
  """(implementation, reason it is the reference or None) for this call on the default backend."""
  backend = jax.default_backend()
  if backend not in ("gpu", "tpu"):
    return "reference", f"no attention kernel for backend {backend!r}"
  if q.dtype not in _KERNEL_DTYPES:
    return "reference", f"kernels take float32 or bfloat16, not {q.dtype}"
  if q.shape[-1] > _MAX_KERNEL_HEAD_DIM:
    return "reference", f"head dim {q.shape[-1]} > {_MAX_KERNEL_HEAD_DIM}"
  if backend == "tpu":
    return "pallas_tpu", None
  # cuDNN's fused kernel beats Triton where it applies: half precision, a mask it knows natively.
  if (
    q.dtype == jnp.bfloat16
    and q.shape[-1] <= 128
    and q.shape[-1] % 8 == 0
    and cudnn.native_arguments(mask) is not None
  ):
    return "cudnn", None
  return "pallas_gpu", None


@functools.cache
def _backend(impl: str, platform: str) -> flash.Backend:
  """The default kernels of `impl`, in interpret mode off their own hardware."""
  native = {"pallas_gpu": "gpu", "pallas_tpu": "tpu"}[impl]
  interpret = platform != native
  if interpret:
    _log.warning("%s runs in Pallas interpret mode on %s: correct but slow", impl, platform)
  return PallasGpu(interpret=interpret) if impl == "pallas_gpu" else PallasTpu(interpret=interpret)


@functools.cache
def _log_once(message: str) -> None:
  # Attention is traced once per layer and per jit; one line per distinct reason is enough.
  _log.info(message)
