"""Bad audio checkpoint folders and configs give one-line UserErrors that say what is wrong."""

import json

import ml_collections
import pytest
from pretrained_audio_models import save_tiny_model

from jaxtalk.config import base_config
from jaxtalk.errors import UserError
from jaxtalk.models.audio.pretrained.importer import (
  import_backbone,
  read_checkpoint,
  with_recorded_architecture,
)
from jaxtalk.models.factory import Models


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  folder = tmp_path_factory.mktemp("w2v")
  save_tiny_model("wav2vec2-base", folder)
  return folder


def _copy(saved, tmp_path, *, config=None, weights=True):
  tmp_path.mkdir(exist_ok=True)
  text = (saved / "config.json").read_text()
  (tmp_path / "config.json").write_text(json.dumps({**json.loads(text), **(config or {})}))
  if weights:
    (tmp_path / "model.safetensors").write_bytes((saved / "model.safetensors").read_bytes())
  return tmp_path


def _error(fn, *args) -> str:
  with pytest.raises(UserError) as caught:
    fn(*args)
  message = str(caught.value)
  assert "\n" not in message
  return message


def test_bad_folders(saved, tmp_path):
  assert "does not exist" in _error(read_checkpoint, tmp_path / "missing")
  (tmp_path / "empty").mkdir()
  assert "no config.json" in _error(read_checkpoint, tmp_path / "empty")
  no_weights = _copy(saved, tmp_path / "no_weights", weights=False)
  assert "no model.safetensors" in _error(read_checkpoint, no_weights)
  (no_weights / "pytorch_model.bin").write_bytes(b"not unpickled")
  assert "safe_serialization=True" in _error(read_checkpoint, no_weights)
  bert = _copy(saved, tmp_path / "bert", config={"model_type": "bert"})
  assert "'bert' model" in _error(read_checkpoint, bert)
  wider = _copy(saved, tmp_path / "wider", config={"intermediate_size": 50})
  assert "layers.0.feed_forward.intermediate_dense.bias has shape (48,)" in _error(
    read_checkpoint, wider
  )
  deeper = _copy(saved, tmp_path / "deeper", config={"num_hidden_layers": 3})
  assert "lacks tensor encoder.layers.2" in _error(read_checkpoint, deeper)


def test_bad_configs(saved):
  config = base_config()
  config.audio.encoder = "hubert"
  assert "set audio.checkpoint" in _error(Models.from_config, config)
  config.audio.checkpoint = str(saved)
  assert "holds a wav2vec2 model" in _error(with_recorded_architecture, config)
  assert "holds a wav2vec2 model" in _error(import_backbone, config.audio)
  config.audio.encoder = "wavlm"
  assert "unknown audio.encoder 'wavlm'" in _error(Models.from_config, config)
  assert isinstance(base_config().audio.architecture, ml_collections.ConfigDict)


def test_recording_the_architecture_leaves_the_given_config_alone(saved):
  config = base_config()
  config.audio.update(encoder="wav2vec2", checkpoint=str(saved))
  recorded = with_recorded_architecture(config)
  assert recorded.audio.architecture["kind"] == "wav2vec2"
  assert not config.audio.architecture  # no side effect on the caller's config
