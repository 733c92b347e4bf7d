"""Videos in and out through the ffmpeg binary that imageio-ffmpeg ships.

Writing pipes raw RGB frames into ffmpeg and muxes the audio from a temporary WAV: H.264 (yuv420p,
the pixel format every player decodes) with AAC audio. Reading streams frames one at a time, so a
long video never has to fit in memory unless the caller collects it.
"""

import dataclasses
import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator

import imageio_ffmpeg
import numpy as np

from jaxtalk.errors import UserError
from jaxtalk.media import atomic_output_path
from jaxtalk.media.audio_io import ffmpeg_error_reason, require_file, save_wav
from jaxtalk.timebase import FPS

# Containers that hold H.264 with AAC and that ffmpeg picks from the file name.
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")
# Visually near-lossless H.264 quality; generated videos are small, so size matters less than detail.
_H264_CRF = 18


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What `probe_video` learns about a video file."""

  fps: float
  width: int
  height: int
  num_frames: int
  duration: float  # seconds, as the container reports it
  has_audio: bool


def _even_sized(frame: np.ndarray) -> np.ndarray:
  """Repeats the last row / column where a size is odd: yuv420p stores colour at half resolution."""
  pad_rows, pad_cols = frame.shape[0] % 2, frame.shape[1] % 2
  if pad_rows or pad_cols:
    frame = np.pad(frame, ((0, pad_rows), (0, pad_cols), (0, 0)), mode="edge")
  return frame


def write_video(
  path: str, frames: np.ndarray | Iterable[np.ndarray], audio: np.ndarray | None = None
) -> None:
  """Writes uint8 RGB frames ([T, H, W, 3], or any iterable of [H, W, 3]) as a 25 fps H.264 video.

  `audio` (mono float32 [N] at 16 kHz) is muxed in as AAC when given. Odd frame sizes are padded by
  one edge pixel. The file appears under `path` only once complete. Raises UserError for an
  unsupported extension and ValueError for malformed frames.
  """
  if os.path.splitext(path)[1].lower() not in VIDEO_SUFFIXES:
    raise UserError(
      f"cannot write video {path}: use one of the extensions {', '.join(VIDEO_SUFFIXES)}"
    )
  frames = iter(frames)
  first = next(frames, None)
  if first is None:
    raise ValueError("write_video needs at least one frame")
  shape = _check_frame(first, None)
  height, width = shape[0] + shape[0] % 2, shape[1] + shape[1] % 2
  with atomic_output_path(path) as temp_path, tempfile.TemporaryDirectory() as work_dir:
    command = [
      imageio_ffmpeg.get_ffmpeg_exe(),
      "-nostdin",
      "-v",
      "error",
      "-y",
      "-f",
      "rawvideo",
      "-pix_fmt",
      "rgb24",
      "-s",
      f"{width}x{height}",
      "-r",
      str(FPS),
      "-i",
      "-",
    ]
    if audio is not None:
      wav_path = os.path.join(work_dir, "audio.wav")
      save_wav(wav_path, audio)
      command += ["-i", wav_path, "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", "160k"]
    command += [
      "-c:v",
      "libx264",
      "-pix_fmt",
      "yuv420p",
      "-crf",
      str(_H264_CRF),
      "-movflags",
      "+faststart",
      temp_path,
    ]
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: a full pipe would stall ffmpeg
      process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=stderr)
      try:
        for frame in _prepend(first, frames):
          _check_frame(frame, shape)
          process.stdin.write(np.ascontiguousarray(_even_sized(frame)).tobytes())
      except BrokenPipeError:
        pass  # ffmpeg quit early; its exit status and log below say why
      finally:
        process.stdin.close()
        returncode = process.wait()
      if returncode != 0:
        stderr.seek(0)
        reason = ffmpeg_error_reason(stderr.read().decode("utf-8", "replace"), returncode)
        raise RuntimeError(f"ffmpeg failed to write {path}: {reason}")


def _prepend(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
  yield first
  yield from rest


def _check_frame(frame: np.ndarray, shape: tuple[int, ...] | None) -> tuple[int, ...]:
  """ValueError unless `frame` is uint8 [H, W, 3] (of `shape`, when given); returns its shape."""
  if (
    not isinstance(frame, np.ndarray)
    or frame.dtype != np.uint8
    or frame.ndim != 3
    or frame.shape[2] != 3
  ):
    raise ValueError(
      f"video frames must be uint8 arrays of shape [H, W, 3], got "
      f"{getattr(frame, 'dtype', type(frame))} {getattr(frame, 'shape', '')}"
    )
  if shape is not None and frame.shape != shape:
    raise ValueError(f"all video frames must have the same shape: {frame.shape} after {shape}")
  return frame.shape


def _unreadable(path: str, ffmpeg_output: str) -> UserError:
  if "matches no streams" in ffmpeg_output or "does not contain any stream" in ffmpeg_output:
    return UserError(f"{path} has no video stream; give a video file")
  reason = ffmpeg_error_reason(ffmpeg_output, 1)
  return UserError(
    f"cannot read video {path} ({reason}); give an mp4, mov, mkv or webm file that plays"
  )


def _open_reader(path: str, input_params: list[str], output_params: list[str]):
  """Starts an imageio-ffmpeg frame reader; returns it and its metadata, UserError if unreadable."""
  require_file(path, "video file")
  reader = imageio_ffmpeg.read_frames(path, input_params=input_params, output_params=output_params)
  try:
    meta = next(reader)
  except (OSError, RuntimeError, StopIteration) as e:
    reader.close()
    raise _unreadable(path, str(e)) from e
  return reader, meta


def _stream(
  path: str, fps: float | None, start_seconds: float, max_seconds: float | None
) -> tuple[dict, Iterator[np.ndarray]]:
  """Opens the video now (so a bad path raises at the call) and returns its metadata and a frame generator."""
  input_params = ["-ss", f"{start_seconds:.6f}"] if start_seconds else []
  if max_seconds is not None:
    input_params += ["-t", f"{max_seconds:.6f}"]
  output_params = ["-vf", f"fps={fps}"] if fps is not None else []
  reader, meta = _open_reader(path, input_params, output_params)
  width, height = meta["size"]

  def frames():
    try:
      for buffer in reader:
        yield np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, 3)
    finally:
      reader.close()

  return meta, frames()


def iter_frames(
  path: str, fps: float | None = None, start_seconds: float = 0.0, max_seconds: float | None = None
) -> Iterator[np.ndarray]:
  """Streams a video's frames as uint8 [H, W, 3], resampled to `fps` if given.

  Only the span [start_seconds, start_seconds + max_seconds) is decoded. A bad path raises
  UserError at the call, not at the first frame.
  """
  return _stream(path, fps, start_seconds, max_seconds)[1]


def probe_video(path: str) -> VideoInfo:
  """Frame rate, size, exact frame count (by decoding), duration and whether there is an audio track."""
  reader, meta = _open_reader(path, [], [])
  reader.close()
  try:
    num_frames, _ = imageio_ffmpeg.count_frames_and_secs(path)
  except RuntimeError as e:
    raise _unreadable(path, str(e)) from e
  width, height = meta["size"]
  return VideoInfo(
    fps=float(meta["fps"]),
    width=int(width),
    height=int(height),
    num_frames=int(num_frames),
    duration=float(meta["duration"]),
    has_audio="audio_codec" in meta,
  )
