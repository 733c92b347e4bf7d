"""Test-wide setup: every test runs on CPU with 8 simulated devices.

This must run before jax is imported anywhere (jax reads XLA_FLAGS once, at backend start), so
sharding code is exercised on a real multi-device mesh even on a laptop.
"""

import os

_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count=8"

if _DEVICE_COUNT_FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_DEVICE_COUNT_FLAG}".strip()
os.environ["JAX_PLATFORMS"] = "cpu"

import atexit  # noqa: E402  (jax must be imported after the environment is set)
import shutil  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402

from jaxtalk.bench.torch_reference import ensure_torchvision_importable  # noqa: E402

# Before any test imports transformers, which imports torchvision whenever it is installed.
ensure_torchvision_importable()

# Many tests compile the same small programs (a train step per resumed run, ...). A session-wide
# compilation cache turns every repeat into a lookup; compiling for 8 simulated devices
# dominates the run time of those tests otherwise.
_COMPILATION_CACHE = tempfile.mkdtemp(prefix="jaxtalk-test-xla-cache-")
atexit.register(shutil.rmtree, _COMPILATION_CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _COMPILATION_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
