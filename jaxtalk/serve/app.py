"""The live demo's web app: the page, portrait uploads, the `/stream` WebSocket, the videos.

    GET  /                      the page (static/index.html, static/client.js)
    POST /portraits             an image file as the request body -> {"portrait": ID, "preview":
                                URL, "warning": TEXT | null}, or 400/413 {"error": TEXT}
    GET  /portraits/ID.png      the portrait as the model sees it (framed, at the model's size)
    GET  /controls              what a start's acting controls take for this model: its emotions,
                                the bounds, its guidance (see `protocol.controls`)
    WS   /stream                streaming sessions (see `jaxtalk.serve.protocol`)
    GET  /downloads/ID.mp4      a finished session's video, while its connection is open
    GET  /stats                 every connection's counters (see `connection.Connection.report`)

Videos are written to a temporary folder that lives as long as the server.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from jaxtalk.demo import DEMO_PORTRAIT
from jaxtalk.errors import UserError
from jaxtalk.serve import protocol
from jaxtalk.serve.connection import FRAME_QUEUE, INBOUND_MESSAGES, Connection
from jaxtalk.serve.engine import Engine, in_thread
from jaxtalk.serve.portraits import MAX_UPLOAD_BYTES, PortraitStore, png_bytes

STATIC = Path(__file__).parent / "static"


def create_app(model) -> FastAPI:
  """The app around one loaded model (a `TalkingHead`), shared by every connection."""
  engine = Engine(model)
  portraits = PortraitStore(DEMO_PORTRAIT, model.image_size, model.config.data.face_crop_scale)
  connections: set[Connection] = set()
  downloads: dict[str, Path] = {}

  @contextlib.asynccontextmanager
  async def lifespan(app: FastAPI):
    app.state.video_folder = Path(tempfile.mkdtemp(prefix="jaxtalk-serve-"))
    try:
      yield
    finally:
      shutil.rmtree(app.state.video_folder, ignore_errors=True)

  app = FastAPI(title="jaxtalk live", lifespan=lifespan, docs_url=None, redoc_url=None)
  app.state.engine, app.state.portraits = engine, portraits
  app.mount("/static", StaticFiles(directory=STATIC), name="static")

  @app.get("/", include_in_schema=False)
  async def page():
    return FileResponse(STATIC / "index.html")

  @app.post("/portraits")
  async def upload_portrait(request: Request):
    data = bytearray()
    async for piece in request.stream():
      data += piece
      if len(data) > MAX_UPLOAD_BYTES:
        return _error(413, f"the image is over {MAX_UPLOAD_BYTES // 2**20} MiB; give a smaller one")
    try:
      portrait = await in_thread(portraits.frame_upload, bytes(data))
    except UserError as e:
      return _error(400, str(e))
    portrait_id = portraits.add(portrait)
    return {
      "portrait": portrait_id,
      "preview": f"/portraits/{portrait_id}.png",
      "warning": await engine.unfamiliar_portrait(portrait),
    }

  @app.get("/portraits/{portrait_id}.png")
  async def portrait_preview(portrait_id: str):
    portrait = portraits.get(portrait_id)
    if portrait is None:
      return _error(404, f"no portrait {portrait_id}")
    return Response(await in_thread(png_bytes, portrait), media_type="image/png")

  @app.get("/controls")
  async def controls():
    return engine.controls()

  @app.websocket("/stream")
  async def stream(websocket: WebSocket):
    await websocket.accept()
    connection = Connection(websocket, engine, portraits, app.state.video_folder, downloads)
    connections.add(connection)
    try:
      await connection.run()
    finally:
      connections.discard(connection)

  @app.get("/downloads/{session_id}.mp4")
  async def download(session_id: str):
    path = downloads.get(session_id)
    if path is None:
      return _error(404, "no such video; videos last as long as the page that made them")
    return FileResponse(path, media_type="video/mp4", filename="jaxtalk.mp4")

  @app.get("/stats")
  async def stats():
    return {
      "connections": [connection.report() for connection in connections],
      "frame_queue": FRAME_QUEUE,
      "inbound_messages": INBOUND_MESSAGES,
      "max_audio_bytes": protocol.MAX_AUDIO_BYTES,
    }

  return app


def _error(status: int, message: str) -> JSONResponse:
  return JSONResponse({"error": message}, status_code=status)


def listen(host: str, port: int) -> socket.socket:
  """A listening socket on host:port (port 0: any free port); UserError if it cannot be had."""
  try:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family)
  except OSError as e:
    raise UserError(
      f"cannot listen on {host}:{port} ({e.strerror or e}); check --host, or pick another --port"
    ) from None


def make_server(app: FastAPI) -> uvicorn.Server:
  """A uvicorn server for the app; run it with `server.run(sockets=[listen(...)])`."""
  config = uvicorn.Config(
    app,
    # The implementation whose reads pause while the app has not taken the last message, which
    # is what lets a slow session push back on its client (see `connection`).
    ws="websockets-sansio",
    ws_max_size=protocol.MAX_WIRE_BYTES,
    # JPEG frames do not compress, nor does audio much: deflate would cost CPU for nothing.
    ws_per_message_deflate=False,
    log_level="warning",
  )
  return uvicorn.Server(config)
