"""Tests for the face detector, the face crop, and portrait loading across pixel formats."""

import time
import tracemalloc

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from PIL import Image
from skimage import data

from jaxtalk.errors import UserError
from jaxtalk.media import face_detect, image_io
from jaxtalk.media.face_detect import Box

# The astronaut's face in skimage.data.astronaut() spans roughly x 170..270, y 60..180.
ASTRONAUT_FACE_CENTRE = (220, 120)


def box_centre(box):
  return box.x + box.width / 2, box.y + box.height / 2


def test_detects_the_astronaut_face_at_any_scale():
  image = data.astronaut()
  face = face_detect.detect_face(image)
  assert face is not None and 60 < face.width < 160
  assert np.allclose(box_centre(face), ASTRONAUT_FACE_CENTRE, atol=25)
  # Detection runs on a downscaled copy; the box comes back in the big image's pixels.
  big = np.asarray(Image.fromarray(image).resize((1400, 1400)))
  big_face = face_detect.detect_face(big)
  assert np.allclose(box_centre(big_face), np.multiply(ASTRONAUT_FACE_CENTRE, 1400 / 512), atol=60)


def test_no_face_in_noise_flat_or_tiny_images():
  rng = np.random.default_rng(0)
  assert face_detect.detect_face(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) is None
  assert face_detect.detect_face(np.full((240, 320, 3), 128, np.uint8)) is None
  # 16 px: smaller than the cascade
  assert face_detect.detect_face(data.astronaut()[::32, ::32]) is None


def test_face_crop_box_shifts_inside_and_pads_only_when_too_big():
  shifted = face_detect.face_crop_box(
    Box(x=0, y=20, width=40, height=40), image_height=200, image_width=300
  )
  # Centred on the face vertically, moved right to fit
  assert shifted == Box(x=0, y=8, width=64, height=64)

  image = np.arange(60 * 100 * 3, dtype=np.int64).reshape(60, 100, 3)
  box = face_detect.face_crop_box(
    Box(x=40, y=10, width=50, height=50), image_height=60, image_width=100
  )
  assert box == Box(x=20, y=-10, width=80, height=80)  # taller than the image: centred, sticks out
  crop = face_detect.crop_square(image, box)
  assert crop.shape == (80, 80, 3)
  np.testing.assert_array_equal(crop[10:70], image[:, 20:100])
  np.testing.assert_array_equal(crop[:10], np.broadcast_to(image[0, 20:100], (10, 80, 3)))
  np.testing.assert_array_equal(crop[70:], np.broadcast_to(image[59, 20:100], (10, 80, 3)))

  assert face_detect.centre_crop_box(60, 100) == Box(x=20, y=0, width=60, height=60)


def test_portrait_is_centred_on_the_face(tmp_path):
  path = str(tmp_path / "astronaut.png")
  iio.imwrite(path, data.astronaut())
  portrait = image_io.load_portrait(path, 160)
  assert portrait.shape == (160, 160, 3) and portrait.dtype == np.uint8
  face = face_detect.detect_face(portrait)
  assert face is not None
  assert np.allclose(box_centre(face), (80, 80), atol=16)
  assert face.width == pytest.approx(160 / face_detect.FACE_CROP_SCALE, rel=0.25)


def test_without_a_face_the_centre_square_is_kept(tmp_path):
  image = np.zeros((100, 200, 3), np.uint8)
  image[:, :50] = (255, 0, 0)
  image[:, 50:150] = (0, 255, 0)
  image[:, 150:] = (0, 0, 255)
  path = str(tmp_path / "bands.png")
  iio.imwrite(path, image)
  portrait = image_io.load_portrait(path, 64)
  assert (portrait[..., 1] > 250).all() and (portrait[..., [0, 2]] < 5).all()


def flat(mode_pixels, path, **save_args):
  Image.fromarray(mode_pixels).save(path, **save_args)
  return path


@pytest.mark.parametrize(
  "name, make, expected_rgb",
  [
    ("gray.png", lambda p: flat(np.full((40, 50), 90, np.uint8), p), (90, 90, 90)),
    ("clear.png", lambda p: flat(np.zeros((40, 50, 4), np.uint8), p), (255, 255, 255)),
    (
      "half.png",
      lambda p: flat(
        np.dstack([np.full((40, 50, 3), (0, 0, 200), np.uint8), np.full((40, 50), 128, np.uint8)]),
        p,
      ),
      (127, 127, 227),
    ),
    ("gray_alpha.png", lambda p: flat(np.zeros((40, 50, 2), np.uint8), p), (255, 255, 255)),
    ("deep.png", lambda p: flat(np.full((40, 50), 32896, np.uint16), p), (128, 128, 128)),
    (
      "palette.png",
      lambda p: Image.new("RGB", (50, 40), (10, 200, 30)).convert("P").save(p) or p,
      (10, 200, 30),
    ),
    ("bits.png", lambda p: Image.new("1", (50, 40), 1).save(p) or p, (255, 255, 255)),
    (
      "print.jpg",
      lambda p: Image.new("RGB", (50, 40), (200, 30, 30)).convert("CMYK").save(p, quality=95) or p,
      (200, 30, 30),
    ),
    (
      "float.tif",
      lambda p: tifffile.imwrite(p, np.full((40, 50, 3), 0.25, np.float32), photometric="rgb") or p,
      (64, 64, 64),
    ),
  ],
)
def test_pixel_formats_become_8_bit_rgb(tmp_path, name, make, expected_rgb):
  portrait = image_io.load_portrait(make(str(tmp_path / name)), 32)
  assert portrait.shape == (32, 32, 3) and portrait.dtype == np.uint8
  np.testing.assert_allclose(portrait.reshape(-1, 3).mean(axis=0), expected_rgb, atol=3)


def test_exif_orientation_is_applied(tmp_path):
  stored = np.zeros((48, 96, 3), np.uint8)  # stored: red left half, blue right half
  stored[:, :48, 0] = 255
  stored[:, 48:, 2] = 255
  exif = Image.Exif()
  exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": red ends up on top
  path = str(tmp_path / "phone.jpg")
  Image.fromarray(stored).save(path, exif=exif, quality=95)
  portrait = image_io.load_portrait(path, 32).astype(int)
  assert portrait[:12, :, 0].mean() > 200 and portrait[20:, :, 2].mean() > 200


def test_very_large_image_is_shrunk_before_decoding_costs_pile_up(tmp_path):
  height, width = 6000, 8000
  ramp = np.linspace(0, 255, width, dtype=np.uint8)
  path = str(tmp_path / "huge.jpg")
  Image.fromarray(np.broadcast_to(ramp[None, :, None], (height, width, 3)).copy()).save(
    path, quality=80
  )
  tracemalloc.start()
  try:
    start = time.perf_counter()
    portrait = image_io.load_portrait(path, 64)
    seconds = time.perf_counter() - start
    peak_bytes = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert portrait.shape == (64, 64, 3)
  assert peak_bytes < 2.5 * height * width * 3  # the decoded image and one copy, no float copies
  assert seconds < 15
  # Centre square of a left-to-right ramp: dark on the left, bright on the right.
  assert portrait[:, 0].mean() < 100 < 160 < portrait[:, -1].mean()


def test_user_errors(tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    image_io.load_portrait(str(tmp_path / "nope.png"), 64)
  with pytest.raises(UserError, match="is not a file"):
    image_io.load_portrait(str(tmp_path), 64)
  (tmp_path / "corrupt.png").write_bytes(b"\x89PNG but not really" * 20)
  with pytest.raises(UserError, match="cannot read image") as error:
    image_io.load_portrait(str(tmp_path / "corrupt.png"), 64)
  assert "\n" not in str(error.value)
  tiny = str(tmp_path / "tiny.png")
  iio.imwrite(tiny, np.zeros((18, 20, 3), np.uint8))
  with pytest.raises(UserError, match="is 20x18 px; give a portrait of at least 32 px"):
    image_io.load_portrait(tiny, 64)


def test_portraits_are_framed_at_the_models_crop_scale():
  """SynthTalk's head-and-shoulders framing (3.1 face boxes) shows the face smaller than ingest's."""
  photo = data.astronaut()
  face = face_detect.detect_face(photo)
  close, wide = (image_io.frame_portrait(photo, 64, scale) for scale in (1.6, 3.1))
  np.testing.assert_array_equal(close, image_io.frame_portrait(photo, 64))  # 1.6 is the default
  box = face_detect.face_crop_box(face, *photo.shape[:2], scale=3.1)
  assert box.width == round(3.1 * max(face.width, face.height))
  # The wide portrait is exactly that box of the photo.
  expected = image_io.resize_square(face_detect.crop_square(photo, box), 64)
  np.testing.assert_array_equal(wide, expected)
  assert not np.array_equal(close, wide)
