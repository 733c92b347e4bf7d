"""One streaming session: the engine's stream of frames, the mp4 being written, what was sent.

Every method blocks (model calls, JPEG encoding, ffmpeg); `connection` runs them in threads.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from pathlib import Path

import numpy as np
from PIL import Image

from jaxtalk.media.video_io import VideoWriter
from jaxtalk.serve.protocol import frame_message

# Frames go to the page as JPEG: a tenth of the bytes of PNG at no visible cost at these sizes.
_JPEG_QUALITY = 90


class Session:
  """A portrait's frames as its audio arrives, and the video of them written alongside."""

  def __init__(self, stream, video_folder: Path):
    self.stream = stream
    self.id = secrets.token_urlsafe(12)
    self.video_path = video_folder / f"{self.id}.mp4"
    self.samples = 0
    self.frames = 0
    self._writer = VideoWriter(str(self.video_path))

  def record(self, samples: np.ndarray, frames: np.ndarray) -> list[bytes]:
    """Adds audio and the frames it released to the video; returns the frames' messages."""
    if len(samples):
      self._writer.write_audio(samples)
      self.samples += len(samples)
    messages = []
    if len(frames):
      self._writer.write_frames(frames)
      for frame in frames:
        messages.append(frame_message(self.frames, _jpeg(frame)))
        self.frames += 1
    return messages

  def close(self) -> bool:
    """Completes the video; False (and no file) when the session had no frame to show."""
    if not self.frames:
      self.discard()
      return False
    self._writer.close()
    return True

  def discard(self) -> None:
    """Ends the session without a video, whatever state it is in; safe to call more than once."""
    self._writer.abort()
    with contextlib.suppress(FileNotFoundError):
      os.remove(self.video_path)


def _jpeg(frame: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(frame).save(buffer, "JPEG", quality=_JPEG_QUALITY)
  return buffer.getvalue()
