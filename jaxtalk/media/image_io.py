"""Portrait images in: any common image file to a square, face-centred uint8 RGB image.

Files are read with imageio's Pillow plugin (EXIF orientation applied), falling back to imageio's
other plugins for formats Pillow lacks. Whatever the pixel format (grayscale, palette, alpha,
16-bit, float, CMYK), the result is 8-bit RGB, with transparency composited over white.
"""

import warnings

import imageio.v3 as iio
import numpy as np
from PIL import Image

from jaxtalk.errors import UserError
from jaxtalk.media.audio_io import require_file
from jaxtalk.media.face_detect import (
  FACE_CROP_SCALE,
  centre_crop_box,
  crop_square,
  detect_face,
  face_crop_box,
)

MIN_PORTRAIT_PX = 32
# Pillow modes whose arrays `_to_rgb` understands; any other mode (CMYK, YCbCr, LAB, ...) is
# converted to RGB by Pillow while reading.
_ARRAY_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "F"})
# Large images are first shrunk by an integer factor to about this shorter side (or 4x the output
# size, if larger), so a 48-megapixel photo costs little time and memory past decoding, and the
# face crop still has several source pixels per output pixel.
_WORKING_SIDE = 1024


def _read_pixels(path: str) -> np.ndarray:
  """The first frame of an image file as imageio returns it (any dtype, 2-D or [H, W, C])."""
  try:
    mode = iio.immeta(path, plugin="pillow").get("mode")
    return iio.imread(
      path, index=0, plugin="pillow", rotate=True, mode=None if mode in _ARRAY_MODES else "RGB"
    )
  except Exception as pillow_error:  # Pillow raises many types for unreadable files
    try:
      with warnings.catch_warnings():  # imageio warns about legacy plugins it tries along the way
        warnings.simplefilter("ignore", DeprecationWarning)
        return iio.imread(path, index=0)
    except Exception:  # no other plugin can read it either: Pillow's reason is the useful one
      reason = str(pillow_error).strip().splitlines()[0] if str(pillow_error).strip() else ""
      if not reason or "can not handle" in reason:  # imageio's words for "not an image it knows"
        reason = "not an image file, or a corrupt one"
      raise UserError(
        f"cannot read image {path} ({reason}); give a png or jpg portrait"
      ) from pillow_error


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
  """Scales any pixel dtype to uint8 at full size: a no-op for the usual 8-bit image."""
  if pixels.dtype == np.uint8:
    return pixels
  if pixels.dtype == np.bool_:
    return pixels.astype(np.uint8) * np.uint8(255)
  if pixels.dtype in (np.uint16, np.int32):  # 16-bit images; Pillow holds some of them as int32
    wide = np.clip(pixels, 0, 65535).astype(np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)
  if np.issubdtype(pixels.dtype, np.floating):
    return np.round(np.clip(np.nan_to_num(pixels), 0.0, 1.0) * 255.0).astype(np.uint8)
  raise UserError(f"unsupported pixel type {pixels.dtype}; give an 8- or 16-bit image")


def _to_rgb(pixels: np.ndarray) -> np.ndarray:
  """uint8 [H, W] or [H, W, 1-4 channels] -> uint8 RGB [H, W, 3], composited over white if it has alpha."""
  if pixels.ndim == 2:
    pixels = pixels[..., None]
  if pixels.ndim != 3 or pixels.shape[-1] not in (1, 2, 3, 4):
    raise UserError(f"image has shape {pixels.shape}; give a grayscale or colour image")
  if pixels.shape[-1] in (2, 4):  # the last channel is alpha
    alpha = pixels[..., -1:].astype(np.float32) / 255.0
    colour = pixels[..., :-1].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    pixels = np.round(colour).astype(np.uint8)
  if pixels.shape[-1] == 1:
    pixels = np.repeat(pixels, 3, axis=-1)
  return pixels


def _shrink(pixels: np.ndarray, factor: int) -> np.ndarray:
  """Box-averages a uint8 image by an integer factor (Pillow's `reduce`: fast, no float copy)."""
  if factor == 1:
    return pixels
  if pixels.ndim == 3 and pixels.shape[-1] == 1:
    pixels = pixels[..., 0]
  return np.asarray(Image.fromarray(pixels).reduce(factor))


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
  """Resizes a square uint8 RGB image to [size, size, 3], anti-aliased (Lanczos, widened when shrinking)."""
  if image.shape[:2] == (size, size):
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))


def load_portrait(path: str, size: int, crop_scale: float = FACE_CROP_SCALE) -> np.ndarray:
  """Loads a portrait as a face-centred square uint8 RGB image [size, size, 3] (`frame_portrait`).

  Raises UserError for a missing, unreadable or tiny (< 32 px) image.
  """
  return frame_portrait(read_image(path), size, crop_scale)


def read_image(path: str) -> np.ndarray:
  """Any image file as uint8 RGB [H, W, 3]; UserError if missing, unreadable or under 32 px."""
  require_file(path, "portrait image")
  pixels = _read_pixels(path)
  height, width = pixels.shape[:2]
  if min(height, width) < MIN_PORTRAIT_PX:
    raise UserError(
      f"image {path} is {width}x{height} px; give a portrait of at least {MIN_PORTRAIT_PX} px"
    )
  return _to_rgb(_to_uint8(pixels))


def frame_portrait(image: np.ndarray, size: int, crop_scale: float = FACE_CROP_SCALE) -> np.ndarray:
  """A uint8 RGB image -> the face-centred square uint8 [size, size, 3] a model samples from.

  The square frames the largest face found, `crop_scale` times its box (see
  `face_detect.face_crop_box`), or is the centred square when no face is found.
  """
  factor = max(1, min(image.shape[:2]) // max(_WORKING_SIDE, 4 * size))
  image = _shrink(image, factor)
  face = detect_face(image)
  box = (
    centre_crop_box(*image.shape[:2])
    if face is None
    else face_crop_box(face, *image.shape[:2], scale=crop_scale)
  )
  return resize_square(crop_square(image, box), size)
