"""How a clip record stores each frame: raw pixels, or a JPEG of its own.

Every frame is encoded apart from its neighbours, so any frame decodes alone: a training window
decodes only the frames it cuts, however long the clip. The compressed codec is JPEG by
measurement (`python -m jaxtalk.bench.shards`, one thread; photo-like frames at 256x256 and
512x512): at quality 95 it stores 47 and 131 MB per minute of 25 fps video against raw's 295 and
1180, and decodes a frame in 1.5 and 3.3 ms. Per-frame WebP (quality 90) is about half the size
but decodes 1.4-2.2 times slower and encodes some 20 times slower; H.264 chunks of 8 frames are
9-13 times smaller than JPEG, but one frame costs a chunk's decode through ffmpeg, 30-60 ms.
Chroma is subsampled 4:2:0: the H.264 videos real clips come from (yuv420p) hold no more colour
detail than that.
"""

import dataclasses
import io

import numpy as np
from PIL import Image

CODEC_NAMES = ("raw", "jpeg")
# Pillow's advice: above 95 JPEG grows much larger for almost no gain in quality.
_MAX_JPEG_QUALITY = 95


@dataclasses.dataclass(frozen=True)
class FrameCodec:
  """A way to store one [S, S, 3] uint8 frame as bytes; `quality` is JPEG's (1-95), None for raw."""

  name: str
  quality: int | None = None

  def __post_init__(self):
    if self.name not in CODEC_NAMES:
      raise ValueError(f"unknown frame codec {self.name!r}; use one of {', '.join(CODEC_NAMES)}")
    if self.name == "raw" and self.quality is not None:
      raise ValueError("raw frames have no quality setting")
    if self.name == "jpeg" and not (
      isinstance(self.quality, int) and 1 <= self.quality <= _MAX_JPEG_QUALITY
    ):
      raise ValueError(f"JPEG quality must be an integer in [1, 95], got {self.quality!r}")

  def encode(self, frame: np.ndarray) -> bytes:
    if self.name == "raw":
      return np.ascontiguousarray(frame).tobytes()
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, "JPEG", quality=self.quality, subsampling="4:2:0")
    return buffer.getvalue()

  def decode(self, data: bytes | memoryview, size: int) -> np.ndarray:
    """The [size, size, 3] uint8 frame in `data` (read-only); ValueError if it is not one."""
    if self.name == "raw":
      if len(data) != size * size * 3:
        raise ValueError(f"a raw {size}x{size} frame is {size * size * 3} bytes, got {len(data)}")
      return np.frombuffer(data, np.uint8).reshape(size, size, 3)
    try:
      image = Image.open(io.BytesIO(data), formats=["JPEG"])
      if image.mode != "RGB" or image.size != (size, size):
        raise ValueError(f"expected a {size}x{size} RGB image, got {image.size} {image.mode}")
      return np.asarray(image)
    except (OSError, SyntaxError) as e:  # Pillow's errors for bytes that are no (whole) JPEG
      raise ValueError(f"not a JPEG image ({e})") from e

  def header(self) -> dict:
    """What a record's header says about its frames' codec."""
    return {"codec": self.name, "quality": self.quality}

  @classmethod
  def from_header(cls, entry: dict) -> "FrameCodec":
    """The codec a record header names; ValueError if it names none this jaxtalk knows."""
    try:
      return cls(entry["codec"], entry["quality"])
    except (TypeError, KeyError) as e:
      raise ValueError(f"clip record header names no frame codec: {entry!r}") from e


RAW = FrameCodec("raw")
# High quality: the re-encoding loss stays well below that of the videos real clips come from.
JPEG = FrameCodec("jpeg", quality=95)
