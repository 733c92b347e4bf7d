"""The PyTorch reference stack (torch, transformers, torchvision's model code), importable here.

The test extra pins torch's CPU build, and the only torchvision wheel the package index has for it
was built against the CUDA torch: its __init__ then fails on its compiled operators ("operator
torchvision::nms does not exist"). transformers imports torchvision whenever it is installed, so
that failure would take the audio references down too. What the references use of torchvision is
plain Python over torch (model definitions, transforms), so where the real package does not
import, a bare package over the installed files stands in for it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types


def ensure_torchvision_importable() -> None:
  """Makes `import torchvision.<submodule>` work for pure-Python submodules; a no-op where the
  real package imports, or where torchvision is not installed."""
  spec = importlib.util.find_spec("torchvision")  # locates the package without executing it
  if spec is None or "torchvision" in sys.modules:
    return
  try:
    importlib.import_module("torchvision")
  except (RuntimeError, ImportError):
    package = types.ModuleType("torchvision")
    package.__path__ = list(spec.submodule_search_locations)
    # transformers probes with importlib.util.find_spec, which needs a module spec.
    package.__spec__ = spec
    sys.modules["torchvision"] = package
