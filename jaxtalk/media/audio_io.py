"""Audio files in and out: any common file to mono float32 at 16 kHz, and atomic WAV writes.

wav, flac and ogg are read with soundfile; everything else (mp3, m4a, the audio track of an mp4,
...) is decoded by the ffmpeg binary that imageio-ffmpeg ships. Both paths then share the same
mono mix (channel mean) and resampler (`scipy.signal.resample_poly` at the exact rational ratio),
so a recording gives the same samples whatever container it came in.
"""

import io
import math
import os
import re
import subprocess

import imageio_ffmpeg
import numpy as np
import soundfile
from scipy import signal

from jaxtalk.errors import UserError
from jaxtalk.media import atomic_output_path
from jaxtalk.timebase import FPS, SAMPLE_RATE, frames_of

# Peak amplitude below which a recording is taken as silence (-80 dBFS): no speech to animate.
SILENCE_PEAK = 1e-4
_SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg"})


def require_file(path: str, what: str) -> None:
  """UserError unless `path` is an existing regular file; `what` names it in the message ("audio file")."""
  if not os.path.exists(path):
    raise UserError(f"{what} {path} does not exist; check the path")
  if not os.path.isfile(path):
    raise UserError(f"{what} {path} is not a file; give the path of a file")


_FFMPEG_ERROR_LINE = re.compile(
  r"error|invalid|no such|not supported|unsupported|does not contain|matches no", re.IGNORECASE
)


def ffmpeg_error_reason(stderr: str, returncode: int) -> str:
  """The line of ffmpeg's output that says what went wrong, without its "[demuxer @ 0x...]" prefix.

  Indented lines (the version banner, stream listings) are skipped; the first remaining line that
  reports an error wins, else the last line, so a failure fits in a one-line message.
  """
  lines = [
    re.sub(r"^(\[[^\]]*\]\s*)+", "", line).strip()
    for line in stderr.splitlines()
    if line.strip() and not line[0].isspace()
  ]
  lines = [line for line in lines if line]
  for line in lines:
    if _FFMPEG_ERROR_LINE.search(line):
      return line
  return lines[-1] if lines else f"ffmpeg exit status {returncode}"


def _read_with_soundfile(path: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
  with soundfile.SoundFile(path) as f:
    frames = -1 if max_seconds is None else int(math.ceil(max_seconds * f.samplerate))
    return f.read(frames, dtype="float32", always_2d=True), f.samplerate


def _read_with_ffmpeg(path: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
  """Decodes the first audio stream at its own rate and channel count.

  The output is a Sun AU stream on stdout: unlike raw PCM it carries the rate and channel count,
  and unlike WAV it is meant for streams of unknown length. Channels are not mixed by ffmpeg,
  whose downmix scales by 1/sqrt(2) and would make the level depend on the container.
  """
  command = [
    imageio_ffmpeg.get_ffmpeg_exe(),
    "-nostdin",
    "-v",
    "error",
    "-i",
    path,
    "-map",
    "0:a:0",
    "-vn",
  ]
  if max_seconds is not None:
    command += ["-t", f"{max_seconds:.6f}"]
  command += ["-c:a", "pcm_f32be", "-f", "au", "-"]
  result = subprocess.run(command, capture_output=True, check=False)
  stderr = result.stderr.decode("utf-8", "replace")
  if "matches no streams" in stderr:
    raise UserError(f"{path} has no audio stream; give a file with a sound track")
  if result.returncode != 0 or not result.stdout:
    reason = ffmpeg_error_reason(stderr, result.returncode)
    raise UserError(
      f"cannot decode audio from {path} ({reason}); give a wav, flac, mp3, m4a or video file"
    )
  return soundfile.read(io.BytesIO(result.stdout), dtype="float32", always_2d=True)


def _decode(path: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
  """The file's samples as [N, channels] float32, and their rate."""
  if os.path.splitext(path)[1].lower() in _SOUNDFILE_SUFFIXES:
    try:
      return _read_with_soundfile(path, max_seconds)
    except soundfile.LibsndfileError:
      pass  # a codec libsndfile lacks, or a misnamed file: ffmpeg knows more formats
  return _read_with_ffmpeg(path, max_seconds)


def load_audio(path: str, *, max_seconds: float | None = None) -> np.ndarray:
  """Loads an audio (or video) file as mono float32 in [-1, 1] at `SAMPLE_RATE`: shape [N].

  Reads at most the first `max_seconds` if given. Raises UserError for a missing, unreadable or
  corrupt file, a file without an audio stream, and audio that is empty, shorter than one video
  frame, or silent.
  """
  require_file(path, "audio file")
  audio, source_rate = _decode(path, max_seconds)
  audio = audio.mean(axis=1)
  if audio.size == 0:
    raise UserError(f"{path} contains no audio samples; give a file with sound in it")
  if source_rate != SAMPLE_RATE:
    common = math.gcd(source_rate, SAMPLE_RATE)
    audio = signal.resample_poly(audio, SAMPLE_RATE // common, source_rate // common)
  audio = np.clip(np.nan_to_num(audio), -1.0, 1.0).astype(np.float32)
  if frames_of(audio.size) == 0:
    raise UserError(
      f"audio in {path} is {1000 * audio.size / SAMPLE_RATE:.0f} ms long, shorter than one video "
      f"frame ({1000 / FPS:.0f} ms); give a longer recording"
    )
  if np.abs(audio).max() < SILENCE_PEAK:
    raise UserError(f"audio in {path} is silent; give a recording with speech in it")
  return audio


def save_wav(path: str, audio: np.ndarray) -> None:
  """Writes mono float audio as a 16 kHz 32-bit float WAV (lossless for float32), atomically."""
  audio = np.asarray(audio, dtype=np.float32)
  if audio.ndim != 1:
    raise ValueError(f"save_wav expects mono audio of shape [N], got {audio.shape}")
  with atomic_output_path(path) as temp_path:
    soundfile.write(temp_path, audio, SAMPLE_RATE, subtype="FLOAT", format="WAV")
