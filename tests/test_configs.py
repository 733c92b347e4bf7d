"""Every config builds abstractly (no memory) and derives valid shardings on the 8-device mesh."""

import importlib.util
import json
import math
from pathlib import Path

import jax
import pytest

from jaxtalk.config import base_config, config_from_dict
from jaxtalk.errors import UserError
from jaxtalk.parallel.mesh import make_mesh
from jaxtalk.stages import STAGES
from jaxtalk.training.optim import make_optimizer
from jaxtalk.training.state import abstract_train_state

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.py"))


def load_config(path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def test_all_configs_found():
  assert {p.stem for p in CONFIGS} >= {"demo", "gpu256", "pod512"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("stage_name", list(STAGES))
def test_config_builds_and_shards(path, stage_name):
  config = load_config(path)
  stage = STAGES[stage_name](config)
  mesh = make_mesh(config.mesh.to_dict())
  assert mesh.devices.size == 8
  state, shardings = abstract_train_state(
    stage.init,
    make_optimizer(stage.settings, stage.is_frozen),
    mesh,
    tuple(config.axis_rules),
    jax.random.key(0),
  )
  leaves = jax.tree.leaves(state.params)
  assert leaves and all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves)
  param_shardings = jax.tree.leaves(shardings.params)
  for leaf, sharding in zip(leaves, param_shardings):
    # A valid sharding splits every dim into equal parts.
    for dim, parts in zip(leaf.shape, sharding.shard_shape(leaf.shape)):
      assert dim % parts == 0
  if math.prod(mesh.shape[a] for a in ("fsdp", "tensor")) > 1:
    # Large configs must actually split their big matrices, not replicate everything.
    big = [s for leaf, s in zip(leaves, param_shardings) if math.prod(leaf.shape) >= 1 << 18]
    assert big and all(not s.is_fully_replicated for s in big)


def test_stored_configs_hold_exactly_the_keys_of_the_base_config():
  stored = json.loads(json.dumps(base_config().to_dict()))  # as a bundle stores it
  assert config_from_dict(stored).motion.depth == base_config().motion.depth
  stored["motion"]["window_chunks"] = 6  # a key of an older jaxtalk
  with pytest.raises(UserError, match="unknown key motion.window_chunks"):
    config_from_dict(stored)
  del stored["motion"]["window_chunks"], stored["motion"]["lookback_chunks"]
  with pytest.raises(UserError, match="lacks key motion.lookback_chunks"):
    config_from_dict(stored)


def test_a_train_section_holds_exactly_its_stage_settings():
  config = load_config(CONFIGS[0])
  config.renderer_train.lr_decay = 0.5  # a config file can add keys; the stage refuses them
  with pytest.raises(UserError, match="config.renderer_train.lr_decay is not a setting"):
    STAGES["renderer"](config)
