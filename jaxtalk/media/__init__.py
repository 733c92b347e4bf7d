"""Media files in and out: audio, portraits, videos, and the face detector that frames portraits.

Everything here talks to files through soundfile, imageio and the ffmpeg binary that imageio-ffmpeg
ships, so no system ffmpeg or network access is needed.
"""

import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_output_path(path: str):
  """Yields a temporary path next to `path`; renames it onto `path` only if the block succeeds.

  The temporary file sits in the same folder (so the rename is atomic) and keeps the extension (so
  writers that pick a format from it still do), and it is removed if anything fails: an
  interrupted write never leaves a half-written file under the final name. A missing output folder
  is created, as users expect of an output path.
  """
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  base, suffix = os.path.splitext(os.path.basename(path))
  fd, temp_path = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{suffix}", dir=folder)
  os.close(fd)
  # mkstemp makes the file private (0600); give it the permissions a plain open() would.
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(temp_path, 0o666 & ~umask)
  try:
    yield temp_path
    os.replace(temp_path, path)
  finally:
    if os.path.exists(temp_path):
      os.remove(temp_path)


def write_bytes(path, data: bytes) -> None:
  """Writes `data` to `path` atomically (see `atomic_output_path`)."""
  with atomic_output_path(str(path)) as temp_path, open(temp_path, "wb") as f:
    f.write(data)


def write_json(path, data) -> None:
  """Writes `data` as indented JSON, atomically; tuples become lists."""
  write_bytes(path, json.dumps(data, indent=1, default=list).encode())
