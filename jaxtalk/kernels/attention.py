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

The kernels are custom calls, which XLA's SPMD partitioner cannot split: it rejects a Mosaic kernel
on a mesh of several chips and may gather a Triton kernel's inputs onto every device. So under a
mesh of several devices (`jax.set_mesh`) a kernel runs inside a `shard_map`, each device on its
own examples and heads, which attention never mixes. Which mesh axes split them is the config's
business: the logical names "activation_batch" and "activation_heads" go through the current
`flax.linen.logical_axis_rules`, as every other activation's do.
"""

from __future__ import annotations

import functools
import logging

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from jaxtalk.kernels import cudnn, flash
from jaxtalk.kernels.masks import FullMask, Mask
from jaxtalk.kernels.pallas_gpu import PallasGpu
from jaxtalk.kernels.pallas_tpu import PallasTpu
from jaxtalk.kernels.reference import reference_attention
from jaxtalk.parallel.sharding import spec_for_dims

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
    return _per_device(cudnn.cudnn_attention, q, k, v, mask)
  backend = _backend(impl, jax.default_backend())
  return _per_device(functools.partial(flash.flash_attention, backend), q, k, v, mask)


def _per_device(kernel, q: jax.Array, k: jax.Array, v: jax.Array, mask: Mask) -> jax.Array:
  """`kernel(q, k, v, mask)` on each device's shard of batch and heads, when a mesh is set.

  A dim stays whole where its mesh axes do not divide it (as parameters do, `spec_for_dims`).
  The devices along an axis that neither dim uses then compute the same shard, and the backward
  pass all-reduces their gradients: `check_vma` must be off, as the kernels' output shapes carry no
  varying-axes type. Heads are sized by the key/value heads: splitting those splits the query
  heads too, in whole groups that share a key/value head. Per-example mask data (key lengths) goes
  with its examples; scalar offsets (the sampler's, traced in its loops) are replicated.
  """
  mesh = jax.sharding.get_abstract_mesh()
  # Inside a shard_map the caller has split the arrays already.
  if mesh.empty or mesh.size == 1 or mesh.manual_axes:
    return kernel(q, k, v, mask)
  logical = nn.logical_to_mesh_axes(("activation_batch", None, "activation_heads", None))
  per_dim = [() if axes is None else (axes,) if isinstance(axes, str) else axes for axes in logical]
  spec = spec_for_dims(per_dim, (q.shape[0], 1, k.shape[2], 1), mesh)
  mask = jax.tree.map(jnp.asarray, mask)
  mask_specs = jax.tree.map(
    lambda x: PartitionSpec(spec[0]) if x.ndim and x.shape[0] == q.shape[0] else PartitionSpec(),
    mask,
  )
  return jax.shard_map(
    kernel, mesh=mesh, in_specs=(spec, spec, spec, mask_specs), out_specs=spec, check_vma=False
  )(q, k, v, mask)


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
