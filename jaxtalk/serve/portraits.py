"""The portraits a session can start from: the bundled demo portrait and recent uploads.

An upload is framed once, as `sample.py` frames a portrait (face found, cropped at the model's
`data.face_crop_scale`, resized to its image size), and kept as that small square image under a
random id. The store holds the most recent MAX_UPLOADS of them and forgets the oldest, so uploads
never grow the server's memory without bound.
"""

from __future__ import annotations

import collections
import io
import os
import secrets
import tempfile
import threading

import numpy as np
from PIL import Image

from jaxtalk.errors import UserError
from jaxtalk.media.image_io import frame_portrait, load_portrait, read_image

DEMO_ID = "demo"
MAX_UPLOADS = 64
MAX_UPLOAD_BYTES = 32 * 1024 * 1024


class PortraitStore:
  """Portrait ids -> uint8 [S, S, 3] images at the model's size; safe to use from any thread."""

  def __init__(self, demo_path, image_size: int, crop_scale: float):
    self.image_size, self.crop_scale = image_size, crop_scale
    self._uploads: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
    self._demo = load_portrait(str(demo_path), image_size, crop_scale)
    self._lock = threading.Lock()

  def get(self, portrait_id: str) -> np.ndarray | None:
    if portrait_id == DEMO_ID:
      return self._demo
    with self._lock:
      return self._uploads.get(portrait_id)

  def frame_upload(self, data: bytes) -> np.ndarray:
    """An uploaded image file's bytes -> its framed portrait; UserError if it is not a usable image."""
    if not data:
      raise UserError("the upload is empty; pick an image file")
    # The image reader takes paths; it tells formats by what a file holds, not by its name.
    with tempfile.TemporaryDirectory(prefix="jaxtalk-upload-") as folder:
      path = os.path.join(folder, "upload")
      with open(path, "wb") as f:
        f.write(data)
      try:
        image = read_image(path)
      except UserError as e:  # its message names the temporary file, which means nothing to a user
        raise UserError(str(e).replace(f"image {path}", "the uploaded image")) from None
    return frame_portrait(image, self.image_size, self.crop_scale)

  def add(self, portrait: np.ndarray) -> str:
    portrait_id = secrets.token_urlsafe(12)
    with self._lock:
      self._uploads[portrait_id] = portrait
      while len(self._uploads) > MAX_UPLOADS:
        self._uploads.popitem(last=False)
    return portrait_id


def png_bytes(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, "PNG")
  return buffer.getvalue()
