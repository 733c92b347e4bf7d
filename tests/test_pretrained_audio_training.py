"""Stage 2 with a frozen pretrained wav2vec2 from `audio.checkpoint`, then its bundle without the folder."""

import shutil

import jax
import numpy as np
from pretrained_audio_models import save_tiny_model
from tiny_configs import tiny_config

from jaxtalk.data.synthtalk.generate import generate_split
from jaxtalk.inference.bundle import load_bundle, save_bundle
from jaxtalk.models.audio.pretrained.importer import read_checkpoint, with_recorded_architecture
from jaxtalk.models.factory import Models
from jaxtalk.parallel.sharding import strip_partitioning
from jaxtalk.stages import motion_stage


def test_frozen_encoder_trains_its_head_only_and_bundles_on_its_own(tmp_path, monkeypatch):
  save_tiny_model("wav2vec2-base", tmp_path / "w2v")
  generate_split(str(tmp_path / "data"), "train", num_clips=2, seconds=1.0, image_size=16, seed=0)
  config = tiny_config()
  config.data.update(train_dir=str(tmp_path / "data"), windows_per_clip=2)
  config.audio.update(
    encoder="wav2vec2", checkpoint=str(tmp_path / "w2v"), weighted_layers=True, context_seconds=0.2
  )
  # 5 steps: the zero-initialised cross-attention output passes audio gradients from the third on.
  config.motion_train.update(batch_size=8, num_steps=5, log_every=1, warmup_steps=1)
  config = with_recorded_architecture(config)  # as train.py does before any stage
  models = Models.from_config(config)
  # Stage 1 is not under test: a random motion encoder stands in for the trained one.
  stage1 = strip_partitioning(
    jax.jit(lambda key: models.init(key, ("motion_encoder", "renderer")))(jax.random.key(0))
  )
  monkeypatch.setattr(
    motion_stage, "load_params", lambda *_: {"motion_encoder": stage1["motion_encoder"]}
  )

  state = motion_stage.MotionStage(config).train(tmp_path / "run")

  _, imported = read_checkpoint(tmp_path / "w2v")
  for params in (state.params, state.ema_params):
    jax.tree.map(
      np.testing.assert_array_equal, jax.device_get(params["audio_encoder"]["backbone"]), imported
    )
    assert np.any(np.asarray(params["audio_encoder"]["layer_weights"]) != 0)  # the head did train

  shutil.rmtree(tmp_path / "w2v")  # the bundle must not need the Hugging Face folder
  save_bundle(tmp_path / "bundle", config, {**stage1, **jax.device_get(state.ema_params)})
  loaded_config, loaded = load_bundle(tmp_path / "bundle")
  encoder = Models.from_config(loaded_config).audio_encoder
  features = encoder.apply({"params": loaded["audio_encoder"]}, np.zeros((1, 5 * 640), np.float32))
  assert features.shape == (1, 5, config.audio.dim)
