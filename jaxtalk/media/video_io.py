"""Videos in and out through the ffmpeg binary that imageio-ffmpeg ships.

Writing pipes raw RGB frames into ffmpeg and muxes the audio from a temporary WAV: H.264 (yuv420p,
the pixel format every player decodes) with AAC audio. Reading streams frames one at a time, so a
long video never has to fit in memory unless the caller collects it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator

import imageio_ffmpeg
import numpy as np
import soundfile

from jaxtalk.errors import UserError
from jaxtalk.media import atomic_output_path
from jaxtalk.media.audio_io import ffmpeg_error_reason, require_file, save_wav
from jaxtalk.timebase import FPS, SAMPLE_RATE

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
  """Writes uint8 RGB frames ([T, H, W, 3], or any iterable of [H, W, 3]) as a 25 fps H.264 video,
  with `audio` (mono float32 [N] at 16 kHz) as AAC when given. See `VideoWriter`."""
  with VideoWriter(path, audio) as writer:
    for frame in frames:
      writer.write_frames(frame[None])


class VideoWriter:
  """A 25 fps H.264 video written as its frames come: constant memory, whatever the length.

      with VideoWriter("out.mp4", audio) as video:     # the audio known up front, or
        video.write_frames(frames)                     # uint8 [n, H, W, 3], as often as needed
      with VideoWriter("out.mp4") as video:            # audio that arrives with the frames:
        video.write_frames(frames); video.write_audio(samples)

  Audio (mono float32 at 16 kHz) is muxed as AAC. Known up front, it goes into the one ffmpeg run
  that encodes the frames. Otherwise the frames are encoded into a work file and any audio given
  with `write_audio` into a WAV beside it; closing muxes the two (copying the video, not
  re-encoding it). Odd frame sizes are padded by one edge pixel. The file appears under `path` only
  once complete: an exception inside the `with` block (or `abort()`) leaves nothing there.
  `path` "-" streams a fragmented MP4 to standard output instead, playable while it is written
  (`python sample.py --out - | ffplay -`). Raises UserError for an unsupported extension and
  ValueError for malformed frames.
  """

  def __init__(self, path: str, audio: np.ndarray | None = None):
    to_stdout = path == "-"
    if not to_stdout and os.path.splitext(path)[1].lower() not in VIDEO_SUFFIXES:
      raise UserError(
        f"cannot write video {path}: use one of the extensions {', '.join(VIDEO_SUFFIXES)}"
      )
    self._path = path
    self._files = contextlib.ExitStack()  # the work folder and the temporary output, if any
    work_dir = self._files.enter_context(tempfile.TemporaryDirectory())
    self._audio_path = os.path.join(work_dir, "audio.wav")
    self._audio_up_front = audio is not None
    if self._audio_up_front:
      save_wav(self._audio_path, audio)
    final = "pipe:1" if to_stdout else self._files.enter_context(atomic_output_path(path))
    # Where the encoder writes: the final file when nothing is left to mux in afterwards.
    self._encoded = final if to_stdout or self._audio_up_front else f"{work_dir}/video.mp4"
    self._final = final
    self._to_stdout = to_stdout
    self._live_audio = None
    self._encoder = self._encoder_log = self._shape = None

  def write_frames(self, frames: np.ndarray) -> None:
    """Appends uint8 frames [n, H, W, 3]."""
    for frame in frames:
      self._shape = _check_frame(frame, self._shape)
      if self._encoder is None:
        self._start_encoder(frame.shape)
      try:
        self._encoder.stdin.write(np.ascontiguousarray(_even_sized(frame)).tobytes())
      except BrokenPipeError:
        self._stop_encoder()  # ffmpeg quit early: this raises with its reason

  def write_audio(self, samples: np.ndarray) -> None:
    """Appends mono float32 16 kHz samples (to a file path, when no audio was given up front)."""
    if self._audio_up_front or self._to_stdout:
      raise ValueError("write_audio needs a file path and no audio given up front")
    if self._live_audio is None:
      self._live_audio = self._files.enter_context(
        soundfile.SoundFile(self._audio_path, "w", SAMPLE_RATE, 1, subtype="FLOAT", format="WAV")
      )
    self._live_audio.write(np.asarray(samples, np.float32).reshape(-1))

  def close(self) -> None:
    """Finishes the video and moves it into place."""
    try:
      if self._encoder is None:
        raise ValueError("a video needs at least one frame")
      self._stop_encoder()
      if self._encoded != self._final:
        audio = []
        if self._live_audio is not None:
          self._live_audio.close()
          audio = ["-i", self._audio_path, "-map", "0:v:0", "-map", "1:a:0", *_AAC]
        self._ffmpeg(["-i", self._encoded, *audio, "-c:v", "copy", *_FASTSTART, self._final])
    except BaseException:
      self.abort()
      raise
    self._files.close()

  def abort(self) -> None:
    """Stops without a file: nothing appears under the path."""
    if self._encoder is not None:
      self._encoder.kill()
      self._encoder.wait()
    self._encoder = None
    # Unwinding with an exception is what makes `atomic_output_path` remove its temporary file.
    with contextlib.suppress(_Aborted):
      self._files.__exit__(_Aborted, _Aborted(), None)

  def __enter__(self) -> VideoWriter:
    return self

  def __exit__(self, kind, value, traceback) -> None:
    if kind is None:
      self.close()
    else:
      self.abort()

  def _start_encoder(self, shape: tuple[int, ...]) -> None:
    height, width = shape[0] + shape[0] % 2, shape[1] + shape[1] % 2
    raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(FPS)]
    audio = ["-i", self._audio_path, "-map", "0:v:0", "-map", "1:a:0", *_AAC]
    h264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(_H264_CRF)]
    if self._to_stdout:
      # Frames leave the encoder as they arrive (no look-ahead, no B-frames, whose reordering
      # delay a fragmented file has no edit list to undo), in fragments a player reads as they
      # come.
      h264 += ["-tune", "zerolatency"]
      container = ["-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4"]
    else:
      container = _FASTSTART
    command = [*raw, "-i", "-", *(audio if self._audio_up_front else []), *h264, *container]
    # Closed with the writer's other files.
    self._encoder_log = self._files.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
    # The log goes to a file, not a pipe: a full pipe would stall ffmpeg.
    self._encoder = subprocess.Popen(
      [*_FFMPEG_START, *command, self._encoded], stdin=subprocess.PIPE, stderr=self._encoder_log
    )

  def _stop_encoder(self) -> None:
    encoder, self._encoder = self._encoder, _Stopped()
    encoder.stdin.close()
    returncode = encoder.wait()
    if returncode != 0:
      self._encoder_log.seek(0)
      self._fail(self._encoder_log.read(), returncode)

  def _ffmpeg(self, arguments: list[str]) -> None:
    done = subprocess.run([*_FFMPEG_START, *arguments], capture_output=True)
    if done.returncode != 0:
      self._fail(done.stderr, done.returncode)

  def _fail(self, log: bytes, returncode: int):
    reason = ffmpeg_error_reason(log.decode("utf-8", "replace"), returncode)
    raise RuntimeError(f"ffmpeg failed to write {self._path}: {reason}")


class _Aborted(Exception):
  """Raised into the writer's files to make them clean up."""


class _Stopped:
  """The encoder after it has finished: nothing to kill, and frames can no longer be written."""

  def kill(self):
    pass

  def wait(self):
    return 0

  @property
  def stdin(self):
    raise ValueError("the video is closed")


_FFMPEG_START = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y"]
_AAC = ["-c:a", "aac", "-b:a", "160k"]
_FASTSTART = ["-movflags", "+faststart"]


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
