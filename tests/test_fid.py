"""Inception-v3 pool3 features against PyTorch, float32, and the Fréchet distance on closed forms.

The reference is torchvision's `Inception3` with random weights, its BatchNorm statistics taken
from a few random images so that every part of the network matters; the FID variant's reference is
the same model with pytorch-fid's documented pool changes applied here. Both get the same frames,
resized by torch's own bilinear interpolation.
"""

import copy
import functools
import importlib.util

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from jaxtalk.errors import UserError
from jaxtalk.eval.fid import fid, frechet_distance
from jaxtalk.eval.inception import FEATURE_DIM, INPUT_SIZE, load_inception, preprocess

TOLERANCE = 1e-4  # max |ours - reference|, relative to the largest |reference| feature
FRAME_SHAPE = (80, 96, 3)
BATCH_SIZE = 2  # smaller than the 3 test frames, so the last batch is padded
# pytorch-fid's blocks: these average without counting the padding, Mixed_7c takes a max.
UNPADDED_AVERAGE_BLOCKS = (
  "Mixed_5b",
  "Mixed_5c",
  "Mixed_5d",
  "Mixed_6b",
  "Mixed_6c",
  "Mixed_6d",
  "Mixed_6e",
  "Mixed_7b",
)


def _torchvision_inception_module():
  """`torchvision.models.inception` (conftest made torchvision's Python parts importable)."""
  return importlib.import_module("torchvision.models.inception")


def _random_frames(count: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (count, *FRAME_SHAPE), dtype=np.uint8)


def _torch_input(frames: np.ndarray) -> torch.Tensor:
  """uint8 frames -> torch's NCHW 299x299 input in [-1, 1], resized as pytorch-fid resizes."""
  x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0
  return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)


def _relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
  return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def _replace_pool(block: torch.nn.Module, pool):
  """Makes `block` (InceptionA, C or E) feed its branch_pool conv from `pool(x)`."""
  torchvision_forward = block._forward

  def _forward(x):
    outputs = torchvision_forward(x)
    outputs[-1] = block.branch_pool(pool(x))  # the pool branch is the last of the outputs
    return outputs

  block._forward = _forward


def _pytorch_fid_model(model: torch.nn.Module) -> torch.nn.Module:
  """A copy of torchvision's `model` with pytorch-fid's documented block changes."""
  fid_model = copy.deepcopy(model)
  unpadded_average = functools.partial(
    F.avg_pool2d, kernel_size=3, stride=1, padding=1, count_include_pad=False
  )
  for name in UNPADDED_AVERAGE_BLOCKS:
    _replace_pool(getattr(fid_model, name), unpadded_average)
  _replace_pool(
    fid_model.Mixed_7c, functools.partial(F.max_pool2d, kernel_size=3, stride=1, padding=1)
  )
  return fid_model


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """(torchvision's model, pool3 out, eval mode; its full state dict; that dict's file)."""
  inception = _torchvision_inception_module()
  torch.manual_seed(0)
  model = inception.Inception3(aux_logits=False, transform_input=False, init_weights=True)
  batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  with torch.no_grad():
    for bn in batch_norms:
      bn.weight.uniform_(0.5, 1.5)
      # Centred at zero, the biases leave a random network chaotic: it amplifies float32
      # rounding some 250-fold by pool3, burying a real mismatch in noise. Positive ones keep
      # most ReLUs on and the amplification near 10, while the features still vary by image.
      bn.bias.normal_(1.0, 0.3)
      bn.momentum = 1.0  # the running statistics become those of the next batch
    # Statistics of real activations keep every layer's output in a sane range through all 94
    # BatchNorms; random ones would blow up or vanish on the way.
    model.train()(_torch_input(_random_frames(4, seed=1)))
  model.eval()
  state_dict = model.state_dict()  # with fc.* and num_batches_tracked, which the loader skips
  path = tmp_path_factory.mktemp("inception") / "inception.safetensors"
  safetensors.torch.save_file(state_dict, path)
  model.fc = torch.nn.Identity()  # the model now ends at pool3 (dropout is off in eval mode)
  return model, state_dict, path


@pytest.fixture(scope="module")
def frames():
  return _random_frames(3, seed=2)


@pytest.mark.parametrize("variant", ["torchvision", "fid"])
def test_pool3_features_match_the_pytorch_reference(variant, reference, frames):
  model, _, path = reference
  reference_model = _pytorch_fid_model(model) if variant == "fid" else model
  with torch.no_grad():
    expected = reference_model(_torch_input(frames)).numpy()

  ours = load_inception(path, variant, batch_size=BATCH_SIZE).features(frames)

  assert ours.shape == (len(frames), FEATURE_DIM) and ours.dtype == np.float64
  error = _relative_error(ours, expected)
  assert error < TOLERANCE, f"{variant}: relative error {error:.2e}"
  if variant == "fid":  # the block changes must matter on these weights, or this proves nothing
    with torch.no_grad():
      torchvision_features = model(_torch_input(frames)).numpy()
    assert _relative_error(torchvision_features, expected) > 100 * TOLERANCE


def test_no_frames_give_no_features(reference):
  extractor = load_inception(reference[2], "fid", batch_size=BATCH_SIZE)
  assert extractor.features(np.zeros((0, *FRAME_SHAPE), np.uint8)).shape == (0, FEATURE_DIM)


@pytest.mark.parametrize("size", [(80, 96), (400, 333)])
def test_resize_matches_torch_bilinear_up_and_down(size):
  frames = np.random.default_rng(3).integers(0, 256, (2, *size, 3), dtype=np.uint8)
  expected = _torch_input(frames).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(np.asarray(preprocess(frames)), expected, atol=2e-6)


def _save(state_dict: dict, path) -> str:
  safetensors.torch.save_file(state_dict, path)
  return str(path)


def _load_error(path) -> str:
  with pytest.raises(UserError) as error:
    load_inception(path)
  message = str(error.value)
  assert "\n" not in message and str(path) in message
  return message


def test_a_missing_tensor_is_named(reference, tmp_path):
  state_dict = dict(reference[1])
  del state_dict["Mixed_6c.branch_pool.bn.running_var"]
  message = _load_error(_save(state_dict, tmp_path / "missing.safetensors"))
  assert "lacks tensor Mixed_6c.branch_pool.bn.running_var" in message


def test_a_tensor_of_the_wrong_shape_is_named(reference, tmp_path):
  state_dict = {**reference[1], "Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 5, 5)}
  message = _load_error(_save(state_dict, tmp_path / "shape.safetensors"))
  assert "Conv2d_1a_3x3.conv.weight has shape (32, 3, 5, 5)" in message
  assert "(32, 3, 3, 3)" in message


@pytest.mark.parametrize("content", [None, b"", b"PK\x03\x04 a pickled checkpoint, say" * 50])
def test_a_file_that_is_not_safetensors_says_how_to_convert(content, tmp_path):
  path = tmp_path / "inception.safetensors"
  if content is not None:  # None: no file at all
    path.write_bytes(content)
  assert "safetensors.torch as st" in _load_error(path)


def test_frechet_distance_of_diagonal_gaussians_has_its_closed_form():
  rng = np.random.default_rng(4)
  mu1, mu2 = rng.standard_normal(16), rng.standard_normal(16)
  s1, s2 = rng.uniform(0.1, 3.0, 16), rng.uniform(0.1, 3.0, 16)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2.0 * np.sqrt(s1 * s2))
  assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("count", [500, 8])  # 8 samples in 32 dimensions: singular covariances
def test_fid_is_zero_for_one_set_and_the_squared_shift_for_a_shifted_one(count):
  rng = np.random.default_rng(5)
  features = rng.standard_normal((count, 32)) * rng.uniform(0.5, 2.0, 32)
  shift = rng.standard_normal(32)
  scale = np.trace(np.cov(features, rowvar=False))
  assert abs(fid(features, features)) < 1e-6 * scale
  assert fid(features, features + shift) == pytest.approx(shift @ shift, abs=1e-6 * scale)


def test_fid_needs_two_samples_in_each_set():
  features = np.zeros((5, FEATURE_DIM))
  with pytest.raises(UserError, match="the first has 1$"):
    fid(features[:1], features)
  with pytest.raises(UserError, match="the second has 0$"):
    fid(features, features[:0])
