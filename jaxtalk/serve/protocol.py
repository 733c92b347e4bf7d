"""The live demo's WebSocket protocol (`/stream`): what each side sends, its limits, its errors.

A connection carries one streaming session at a time, and any number of them one after another.

Client -> server
  text    {"type": "start", "portrait": ID, "seed": INT, ...acting controls}   opens a session.
          ID is "demo" (the bundled demo portrait) or an id that `POST /portraits` returned for an
          uploaded image; "seed" is optional (default 0, at most 2**31 - 1). The acting controls
          are optional too; absent (or null) is each one's default:
            "emotion"           "auto" (the model hears it in the voice) or one of the model's
                                emotion labels (`GET /controls` lists them)
            "intensity"         of the emotion, 0 (neutral) to 1 (full; the default)
            "pose_amplitude"    head motion, times the trained amount: 0 (the portrait's pose
                                held) to 2.5; absent: auto
            "blink_rate"        blinks a minute, 0 to 60; absent: auto
            "audio_guidance"    classifier-free guidance by the audio, 0 to 10 (1: none); absent:
                                the model's config (`GET /controls` says what it is)
            "emotion_guidance"  guidance by the given emotion, 0 to 10 (1: none); likewise
          Control values are inputs of the compiled sampler; only turning a guidance on or off
          (1 against any other value) or giving an emotion with emotion guidance runs another
          program, compiled the first time it is asked for. No other keys.
  binary  audio: float32 little-endian mono samples at 16 kHz, any number of them per message up
          to MAX_AUDIO_BYTES (64 KiB, 1.024 s). Frame i is made from samples [640 i, 640 (i + 1)).
  text    {"type": "end"}   no more audio: the session makes its last frames and its video.

Server -> client
  text    {"type": "started", "lookahead_ms": F, "frame_size": S, "fps": 25, "sample_rate": 16000,
          "samples_per_frame": 640}   the session is open. No frame waits for more than
          `lookahead_ms` of audio past its own end (frames come a model chunk at a time).
  binary  a frame: its index as a little-endian uint32, then a JPEG of S x S pixels. Indices
          start at 0 in every session and arrive in order, none skipped.
  text    {"type": "done", "frames": N, "samples": M, "download": URL | null}   every frame has
          been sent: N = floor(M / 640), M the samples the server received. URL is the session's
          H.264 + AAC mp4; it stays downloadable until the connection closes or starts another
          session. null when the session was shorter than one frame (no video).
  text    {"type": "error", "message": TEXT, "session_ended": BOOL}
  Replies and frames come in the order of the client messages that caused them.

Errors. A message the server cannot use is answered with an error and otherwise ignored: text
that is not a JSON object of a known type, a start with a bad key or value (an emotion the model
does not know included) or while a session is open, audio or an end with none open, text over
MAX_TEXT_BYTES. Audio that is unusable (a length not a multiple of 4 bytes, over
MAX_AUDIO_BYTES, NaN or infinite samples) while a session is open ends that session
("session_ended": true: no video, its frames so far stay valid) because the rest of its audio would
no longer line up with its frames; the connection stays open for a new start. Messages over
MAX_WIRE_BYTES are not read at all: the WebSocket layer closes the connection (code 1009). A
failure inside the server (a bug) is reported as an error with "session_ended": true, and the
server then closes that connection (code 1011). Other connections never notice any of this.

Flow control. The server reads the socket only as fast as it computes and sends: when a client
reads its frames slowly the server stops reading its audio, and TCP pushes back on the client.
"""

from __future__ import annotations

import dataclasses
import json
import struct

import numpy as np

from jaxtalk.data.acting import MAX_BLINK_RATE, MAX_POSE_AMPLITUDE
from jaxtalk.timebase import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME

MAX_AUDIO_BYTES = 64 * 1024
MAX_TEXT_BYTES = 4 * 1024
# Larger messages are refused by the WebSocket layer before they are buffered: no error message,
# but no megabytes held for a message that would be refused anyway.
MAX_WIRE_BYTES = 1024 * 1024
MAX_SEED = 2**31 - 1
# Guidance past this only exaggerates; a bound also keeps huge JSON numbers out of float().
MAX_GUIDANCE = 10.0
FRAME_HEADER = struct.Struct("<I")


class BadMessage(Exception):
  """A client message the server cannot use; the text is what the error message says."""


@dataclasses.dataclass(frozen=True)
class Start:
  """A start message; each control that is None was not given (the model's choice, or default)."""

  portrait: str
  seed: int = 0
  emotion: str | None = None
  intensity: float | None = None
  pose_amplitude: float | None = None
  blink_rate: float | None = None
  audio_guidance: float | None = None
  emotion_guidance: float | None = None


@dataclasses.dataclass(frozen=True)
class End:
  pass


def parse_control(text: str) -> Start | End:
  """A text message -> Start or End; BadMessage for anything else."""
  if len(text.encode()) > MAX_TEXT_BYTES:
    raise BadMessage(f"text message over {MAX_TEXT_BYTES} bytes")
  try:
    message = json.loads(text)
  except ValueError:
    raise BadMessage("text messages must be JSON") from None
  if not isinstance(message, dict):
    raise BadMessage("text messages must be JSON objects")
  kind = message.pop("type", None)
  if kind == "end" and not message:
    return End()
  if kind == "start":
    return _parse_start(message)
  if kind == "end":
    raise BadMessage(f"unknown keys in end: {', '.join(sorted(message))}")
  raise BadMessage(f'unknown message type {kind!r}; the types are "start" and "end"')


def _parse_start(message: dict) -> Start:
  unknown = set(message) - {field.name for field in dataclasses.fields(Start)}
  if unknown:
    raise BadMessage(f"unknown keys in start: {', '.join(sorted(unknown))}")
  portrait, seed = message.get("portrait"), message.get("seed", 0)
  if not isinstance(portrait, str):
    raise BadMessage('start needs "portrait": "demo" or the id of an uploaded portrait')
  if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
    raise BadMessage(f'"seed" must be an integer from 0 to {MAX_SEED}')
  emotion = message.get("emotion")
  if emotion is not None and not isinstance(emotion, str):
    raise BadMessage('"emotion" must be "auto" or one of the model\'s emotion labels')
  return Start(
    portrait,
    seed,
    emotion=None if emotion == "auto" else emotion,
    intensity=_number(message, "intensity", 1.0, "0 (neutral) to 1 (full)"),
    pose_amplitude=_number(
      message,
      "pose_amplitude",
      MAX_POSE_AMPLITUDE,
      f"0 (a still head) to {MAX_POSE_AMPLITUDE:g}, or absent for auto",
    ),
    blink_rate=_number(
      message, "blink_rate", MAX_BLINK_RATE, f"0 to {MAX_BLINK_RATE:g} a minute, or absent for auto"
    ),
    audio_guidance=_number(
      message, "audio_guidance", MAX_GUIDANCE, f"0 to {MAX_GUIDANCE:g} (1: no guidance)"
    ),
    emotion_guidance=_number(
      message, "emotion_guidance", MAX_GUIDANCE, f"0 to {MAX_GUIDANCE:g} (1: no guidance)"
    ),
  )


def _number(message: dict, key: str, high: float, what: str) -> float | None:
  """`message[key]` as a float in [0, high]; None when absent or null."""
  value = message.get(key)
  if value is None:
    return None
  # bool is an int to Python, but true is no number to a client; NaN fails the comparison.
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
    raise BadMessage(f'"{key}" must be a number from {what}')
  return float(value)


def parse_audio(data: bytes) -> np.ndarray:
  """A binary message -> float32 samples [n]; BadMessage for a bad length or non-finite samples."""
  if len(data) > MAX_AUDIO_BYTES:
    raise BadMessage(
      f"audio message of {len(data)} bytes; send at most {MAX_AUDIO_BYTES} bytes "
      f"({MAX_AUDIO_BYTES // 4} samples) per message"
    )
  if len(data) % 4:
    raise BadMessage(f"audio message of {len(data)} bytes: not whole float32 samples")
  samples = np.frombuffer(data, "<f4").astype(np.float32)
  if not np.isfinite(samples).all():
    raise BadMessage("audio has NaN or infinite samples")
  return samples


def controls(emotions: tuple[str, ...], audio_guidance: float, emotion_guidance: float) -> dict:
  """What `GET /controls` answers: the model's emotions, the controls' bounds, the model's
  guidance (what a start without guidance gets)."""
  return {
    "emotions": list(emotions),
    "max_pose_amplitude": MAX_POSE_AMPLITUDE,
    "max_blink_rate": MAX_BLINK_RATE,
    "max_guidance": MAX_GUIDANCE,
    "audio_guidance": audio_guidance,
    "emotion_guidance": emotion_guidance,
  }


def started(lookahead_ms: float, frame_size: int) -> dict:
  return {
    "type": "started",
    "lookahead_ms": round(lookahead_ms, 1),
    "frame_size": frame_size,
    "fps": FPS,
    "sample_rate": SAMPLE_RATE,
    "samples_per_frame": SAMPLES_PER_FRAME,
  }


def done(frames: int, samples: int, download: str | None) -> dict:
  return {"type": "done", "frames": frames, "samples": samples, "download": download}


def error(message: str, session_ended: bool) -> dict:
  return {"type": "error", "message": message, "session_ended": session_ended}


def frame_message(index: int, jpeg: bytes) -> bytes:
  return FRAME_HEADER.pack(index) + jpeg


def split_frame_message(data: bytes) -> tuple[int, bytes]:
  """A frame message -> (index, JPEG bytes): what a client does with one."""
  return FRAME_HEADER.unpack_from(data)[0], data[FRAME_HEADER.size :]
