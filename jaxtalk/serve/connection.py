"""One WebSocket connection of the live demo: three tasks joined by two bounded queues.

    socket --receive--> inbound (INBOUND_MESSAGES) --work--> outbound (FRAME_QUEUE) --send--> socket

`receive` checks each message (`protocol`) and queues what is usable; `work` feeds audio to the
model (under the engine's lock, in a thread), writes the video and encodes the frames; `send`
writes frames and replies to the socket. Every queue is bounded, so when a client reads slowly the
chain stops link by link: `send` waits for the socket, `work` for room in `outbound`, `receive` for
room in `inbound`, and then nothing reads the socket, so TCP makes the client wait. A connection
holds at most `frame_bound` frames at once (the `outbound` queue, the one being sent, and those one
model call releases); `report` gives their number, and its peak, for /stats.

When the client leaves, whichever task notices first ends, the others are cancelled, and the open
session and any video it made are deleted. A failure inside the server (a bug, or ffmpeg failing)
is logged, reported to the client as an error and closes its connection (code 1011), which
leaves no session half-ended; the server and its other connections go on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from pathlib import Path

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from jaxtalk.errors import UserError
from jaxtalk.inference.generate import SampleOptions
from jaxtalk.serve import protocol
from jaxtalk.serve.engine import Engine, in_thread
from jaxtalk.serve.portraits import PortraitStore
from jaxtalk.serve.session import Session
from jaxtalk.timebase import SAMPLE_RATE, SAMPLES_PER_FRAME

# Checked messages waiting for the model: at most this many 64 KiB audio messages per connection.
INBOUND_MESSAGES = 4
# Encoded frames (and replies) waiting for the socket: 2 s of video.
FRAME_QUEUE = 50

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Begin:
  portrait: np.ndarray
  options: SampleOptions


@dataclasses.dataclass(frozen=True)
class _Abort:
  reason: str


@dataclasses.dataclass(frozen=True)
class _Reply:
  """An answer to a message that `receive` refused, queued so replies keep the messages' order."""

  message: dict


# Queued after the error that reports a failure: `send` closes the connection when it gets here.
_CLOSE = object()


def frame_bound(lookahead_ms: float) -> int:
  """The most frames a connection holds: the outbound queue, the frame being sent, and the frames
  one model call can release: those of one message's audio and of the look-ahead it completes."""
  held_back = math.ceil(lookahead_ms * SAMPLE_RATE / 1000 / SAMPLES_PER_FRAME) + 1
  one_message = math.ceil(protocol.MAX_AUDIO_BYTES / 4 / SAMPLES_PER_FRAME)
  return FRAME_QUEUE + 1 + one_message + held_back


class Connection:
  def __init__(
    self,
    websocket: WebSocket,
    engine: Engine,
    portraits: PortraitStore,
    video_folder: Path,
    downloads: dict[str, Path],
  ):
    self.websocket = websocket
    self.engine = engine
    self.portraits = portraits
    self.video_folder = video_folder
    self.downloads = downloads  # the server's session id -> finished video; this adds its own
    self.frames_sent = 0
    self.buffered_frames = 0  # made by the model, not yet written to the socket
    self.peak_buffered_frames = 0
    self.frame_bound = 0  # set when a session starts (it depends on the model's look-ahead)
    self._inbound: asyncio.Queue = asyncio.Queue(INBOUND_MESSAGES)
    self._outbound: asyncio.Queue = asyncio.Queue(FRAME_QUEUE)
    self._session: Session | None = None
    self._finished: Session | None = None  # the last session's video, downloadable until the next

  def report(self) -> dict:
    """This connection's counters, for /stats."""
    session = self._session
    return {
      "streaming": session is not None,
      "received_samples": session.samples if session else 0,
      "frames_sent": self.frames_sent,
      "buffered_frames": self.buffered_frames,
      "peak_buffered_frames": self.peak_buffered_frames,
      "frame_bound": self.frame_bound,
    }

  async def run(self) -> None:
    """Serves the connection until the client leaves; then frees everything it held."""
    try:
      async with asyncio.TaskGroup() as tasks:
        tasks.create_task(self._receive())
        tasks.create_task(self._work())
        tasks.create_task(self._send())
    except* WebSocketDisconnect:
      pass
    finally:
      await in_thread(self._forget_videos)

  # ------------------------------------------------------------------------------------ receive
  async def _receive(self) -> None:
    session_open = False  # as far as the messages read so far go; `work` catches up in order
    while True:
      message = await self.websocket.receive()
      if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
      try:
        if message.get("bytes") is not None:
          if not session_open:
            raise protocol.BadMessage('audio before a session: send {"type": "start"} first')
          try:
            samples = protocol.parse_audio(message["bytes"])
          except protocol.BadMessage as e:
            session_open = False
            await self._inbound.put(_Abort(str(e)))
            continue
          await self._inbound.put(samples)
          continue
        control = protocol.parse_control(message.get("text") or "")
        if isinstance(control, protocol.Start):
          if session_open:
            raise protocol.BadMessage('a session is open; send {"type": "end"} before a new start')
          portrait = self.portraits.get(control.portrait)
          if portrait is None:
            raise protocol.BadMessage(
              f'unknown portrait {control.portrait!r}: use "demo" or upload the image again'
            )
          try:
            options = self.engine.options(control)
          except UserError as e:
            raise protocol.BadMessage(str(e)) from None
          session_open = True
          await self._inbound.put(_Begin(portrait, options))
        else:
          if not session_open:
            raise protocol.BadMessage("end without an open session")
          session_open = False
          await self._inbound.put(control)
      except protocol.BadMessage as e:
        await self._inbound.put(_Reply(protocol.error(str(e), session_ended=False)))

  # --------------------------------------------------------------------------------------- work
  async def _work(self) -> None:
    try:
      while True:
        item = await self._inbound.get()
        try:
          await self._handle(item)
        except Exception as e:
          _log.exception("a live demo session failed")
          message = f"internal error ({type(e).__name__}); the server closes this connection"
          await self._outbound.put(protocol.error(message, session_ended=True))
          await self._outbound.put(_CLOSE)
          return
    finally:
      if self._session is not None:
        await in_thread(self._session.discard)

  async def _handle(self, item) -> None:
    if isinstance(item, _Begin):
      await self._begin(item)
    elif isinstance(item, np.ndarray):
      await self._deliver(item, await self.engine.compute(self._session.stream.push, item))
    elif isinstance(item, protocol.End):
      no_audio = np.zeros(0, np.float32)
      await self._deliver(no_audio, await self.engine.compute(self._session.stream.finish))
      await self._close()
    elif isinstance(item, _Reply):
      await self._outbound.put(item.message)
    else:
      await self._abort(item.reason)

  async def _begin(self, begin: _Begin) -> None:
    await in_thread(self._forget_videos)
    stream = await self.engine.open_stream(begin.portrait, begin.options)
    # Made here, not in a thread, so no cancellation can come between making it and holding it.
    self._session = Session(stream, self.video_folder)
    self.frame_bound = frame_bound(stream.lookahead_ms)
    await self._outbound.put(protocol.started(stream.lookahead_ms, self.engine.image_size))

  async def _deliver(self, samples: np.ndarray, frames: np.ndarray) -> None:
    self.buffered_frames += len(frames)
    self.peak_buffered_frames = max(self.peak_buffered_frames, self.buffered_frames)
    for message in await in_thread(self._session.record, samples, frames):
      await self._outbound.put(message)

  async def _close(self) -> None:
    # Held as the finished session before its video is complete, so a client that leaves
    # meanwhile still has the video deleted.
    session, self._session, self._finished = self._session, None, self._session
    if await in_thread(session.close):
      self.downloads[session.id] = session.video_path
      url = f"/downloads/{session.id}.mp4"
    else:
      url = None
    await self._outbound.put(protocol.done(session.frames, session.samples, url))

  async def _abort(self, reason: str) -> None:
    session, self._session = self._session, None
    await in_thread(session.discard)
    await self._outbound.put(protocol.error(reason, session_ended=True))

  def _forget_videos(self) -> None:
    if self._finished is not None:
      self.downloads.pop(self._finished.id, None)
      self._finished.discard()
      self._finished = None

  # --------------------------------------------------------------------------------------- send
  async def _send(self) -> None:
    while True:
      message = await self._outbound.get()
      if message is _CLOSE:
        await self.websocket.close(1011)
        raise WebSocketDisconnect(1011)
      try:
        if isinstance(message, bytes):
          await self.websocket.send_bytes(message)
          self.buffered_frames -= 1
          self.frames_sent += 1
        else:
          await self.websocket.send_json(message)
      except RuntimeError as e:
        # uvicorn closed the socket itself (a keepalive ping went unanswered) and refuses sends
        # before it tells `receive`: the client has gone all the same.
        raise WebSocketDisconnect(1006) from e
