"""The live demo's server (`python -m jaxtalk.serve`) over real sockets: a uvicorn server on a free
port of 127.0.0.1, a tiny random model, and WebSocket clients that speak `jaxtalk.serve.protocol`.

What counts is what a client can see: one frame per 640 samples it sent, in order; an H.264 + AAC
video; errors for bad messages while other sessions go on; and, for a client that stops reading,
the server holding no more than its stated number of frames (its own /stats counters)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from skimage import data
from tiny_configs import tiny_config
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from jaxtalk.bench.model import random_params
from jaxtalk.demo import DEMO_PORTRAIT
from jaxtalk.errors import UserError
from jaxtalk.inference.generate import TalkingHead
from jaxtalk.media.image_io import load_portrait
from jaxtalk.media.video_io import probe_video
from jaxtalk.serve import __main__ as serve_main
from jaxtalk.serve import connection, protocol
from jaxtalk.serve.app import create_app, listen, make_server
from jaxtalk.serve.engine import warm_up
from jaxtalk.serve.portraits import DEMO_ID
from jaxtalk.timebase import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME

# -------------------------------------------------------------------------------- the server


def warm_model(model) -> TalkingHead:
  """`model`, compiled for what the server runs, so no test's timing includes compiling."""
  config = model.config
  warm_up(
    model, load_portrait(str(DEMO_PORTRAIT), config.data.image_size, config.data.face_crop_scale)
  )
  return model


@pytest.fixture(scope="module")
def model():
  config = tiny_config()
  return warm_model(TalkingHead(config, random_params(config)))


@contextlib.contextmanager
def serving(app, sock=None):
  """Runs the app's uvicorn server in a thread; yields its "host:port"."""
  sock = sock or listen("127.0.0.1", 0)
  server = make_server(app)
  thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
  thread.start()
  deadline = time.monotonic() + 30
  while not server.started:
    assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
    time.sleep(0.02)
  try:
    yield f"127.0.0.1:{sock.getsockname()[1]}"
  finally:
    server.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def app(model):
  return create_app(model)


@pytest.fixture(scope="module")
def host(app):
  with serving(app) as host:
    yield host


def get(host, path) -> tuple[int, bytes]:
  try:
    with urllib.request.urlopen(f"http://{host}{path}", timeout=30) as response:
      return response.status, response.read()
  except urllib.error.HTTPError as e:
    return e.code, e.read()


def post(host, path, body: bytes) -> tuple[int, dict]:
  request = urllib.request.Request(f"http://{host}{path}", data=body, method="POST")
  try:
    with urllib.request.urlopen(request, timeout=60) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def connections(host) -> list[dict]:
  return json.loads(get(host, "/stats")[1])["connections"]


# ---------------------------------------------------------------------------------- a client


def speech(num_samples: int, seed: int = 0) -> np.ndarray:
  """A voiced-sounding test signal: a wandering tone under noise, loud and quiet in turns."""
  rng = np.random.default_rng(seed)
  t = np.arange(num_samples) / SAMPLE_RATE
  envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
  tone = np.sin(2 * np.pi * (150 + 50 * np.sin(2 * np.pi * 0.5 * t)) * t)
  return (0.3 * envelope * tone + 0.02 * rng.standard_normal(num_samples)).astype(np.float32)


class Client:
  """One WebSocket connection (websockets' asyncio client: it reads while a send waits for the
  socket, which a client that both sends and receives a lot needs)."""

  def __init__(self, ws):
    self.ws = ws

  async def send_json(self, **message):
    await self.ws.send(json.dumps(message))

  async def send_audio(self, samples: np.ndarray, block: int = 1280):
    for start in range(0, len(samples), block):
      await self.ws.send(samples[start : start + block].astype("<f4").tobytes())

  async def until(self, kind: str) -> tuple[list[tuple[int, bytes]], dict]:
    """The frames received until a control message of type `kind`, and that message; no other
    control message may come first."""
    frames = []
    while True:
      async with asyncio.timeout(60):
        message = await self.ws.recv()
      if isinstance(message, bytes):
        frames.append(protocol.split_frame_message(message))
        continue
      message = json.loads(message)
      assert message["type"] == kind, message
      return frames, message

  async def start(self, portrait=DEMO_ID, seed=0, **controls) -> dict:
    await self.send_json(type="start", portrait=portrait, seed=seed, **controls)
    return (await self.until("started"))[1]

  async def send_then_end(self, samples, block=1280):
    await self.send_audio(samples, block)
    await self.send_json(type="end")

  async def finish(self, samples, block=1280):
    """Sends `samples` and the end while reading; returns the frames and the done message."""
    sender = asyncio.create_task(self.send_then_end(samples, block))
    frames, done = await self.until("done")
    await sender
    return frames, done

  async def session(self, samples, block=1280, portrait=DEMO_ID, **controls):
    started = await self.start(portrait, **controls)
    return (started, *await self.finish(samples, block))


@contextlib.asynccontextmanager
async def client(host, **options):
  async with connect(f"ws://{host}/stream", proxy=None, compression=None, **options) as ws:
    yield Client(ws)


async def wait_for(condition, what: str, seconds: float = 30):
  """Polls a blocking `condition` (off the client's event loop) until it holds."""
  deadline = time.monotonic() + seconds
  while not await asyncio.to_thread(condition):
    assert time.monotonic() < deadline, f"timed out waiting until {what}"
    await asyncio.sleep(0.05)


def check_frames(frames, num_samples, size=16):
  """One frame per whole 640 samples, indexed 0, 1, ... in order, each a JPEG of size x size."""
  assert [index for index, _ in frames] == list(range(num_samples // SAMPLES_PER_FRAME))
  for _, jpeg in frames[:3] + frames[-3:]:
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    assert Image.open(io.BytesIO(jpeg)).size == (size, size)


def codecs(path) -> tuple[str, str]:
  """(video codec, audio codec) as ffmpeg names them."""
  probe = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)]
  log = subprocess.run(probe, capture_output=True, text=True).stderr
  streams = [line.split(": ")[1:3] for line in log.splitlines() if "Stream #" in line]
  named = {kind: details.split()[0] for kind, details in streams}
  return named.get("Video"), named.get("Audio")


def check_video(path, num_frames, num_samples):
  """An H.264 + AAC mp4 at 25 fps with the session's frames and (to a frame) its audio."""
  assert codecs(path) == ("h264", "aac")
  info = probe_video(str(path))
  assert (info.fps, info.num_frames, info.has_audio) == (FPS, num_frames, True)
  assert info.duration == pytest.approx(num_samples / SAMPLE_RATE, abs=1.5 / FPS)


def download(host, url, tmp_path, name="video.mp4"):
  status, body = get(host, url)
  assert status == 200, body
  path = tmp_path / name
  path.write_bytes(body)
  return path


def ffmpeg_children() -> list[int]:
  """Process ids of this process's running ffmpeg children (the video writers' encoders)."""
  children = []
  for task in os.listdir("/proc/self/task"):
    # A thread may end between the listing and the read (the thread pool's workers come and go).
    with contextlib.suppress(FileNotFoundError), open(f"/proc/self/task/{task}/children") as f:
      children += [int(pid) for pid in f.read().split()]
  named = []
  for pid in children:
    with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/cmdline", "rb") as f:
      if b"ffmpeg" in f.read():
        named.append(pid)
  return named


# ------------------------------------------------------------------------------------- tests


def test_a_session_has_one_frame_per_640_samples_and_an_h264_aac_video(host, app, tmp_path):
  num_samples = 2 * SAMPLE_RATE + 1234  # not a whole number of frames: the rest makes no frame

  async def scenario():
    async with client(host) as c:
      started, frames, done = await c.session(speech(num_samples), block=3000)
      assert started["frame_size"] == 16 and started["lookahead_ms"] > 0
      assert (started["fps"], started["samples_per_frame"]) == (FPS, SAMPLES_PER_FRAME)
      check_frames(frames, num_samples)
      assert (done["frames"], done["samples"]) == (num_samples // SAMPLES_PER_FRAME, num_samples)
      first_video = done["download"]
      check_video(download(host, first_video, tmp_path), done["frames"], num_samples)

      # The next session on the connection counts from frame 0 again and replaces the video.
      _, frames, done = await c.session(speech(SAMPLE_RATE, seed=1), block=SAMPLE_RATE)
      check_frames(frames, SAMPLE_RATE)
      assert get(host, first_video)[0] == 404
      assert get(host, done["download"])[0] == 200

      # Less than one frame of audio: a session without a video.
      _, frames, done = await c.session(speech(SAMPLES_PER_FRAME - 1))
      assert (frames, done["frames"], done["download"]) == ([], 0, None)
    await wait_for(lambda: connections(host) == [], "the connection is gone")

  asyncio.run(scenario())
  assert os.listdir(app.state.video_folder) == []  # the video went with its connection


def test_two_sessions_at_once(host, tmp_path):
  lengths = (3 * SAMPLE_RATE, 2 * SAMPLE_RATE + 700)

  async def one(i, both_started):
    async with client(host) as c:
      await c.start(seed=i)
      audio = speech(lengths[i], seed=i)
      await c.send_audio(audio[: SAMPLE_RATE // 2])
      await both_started.wait()  # each has a session open and streaming before either ends
      frames, done = await c.finish(audio[SAMPLE_RATE // 2 :], block=1600 + 300 * i)
      video = await asyncio.to_thread(download, host, done["download"], tmp_path, f"{i}.mp4")
      return frames, done, video

  async def scenario():
    both_started = asyncio.Barrier(2)
    return await asyncio.gather(one(0, both_started), one(1, both_started))

  for (frames, done, video), length in zip(asyncio.run(scenario()), lengths):
    check_frames(frames, length)
    check_video(video, done["frames"], length)


def test_bad_messages_get_errors_and_the_server_keeps_serving(host):
  async def well_behaved():  # streams on another connection while the first one misbehaves
    async with client(host) as c:
      return (await c.session(speech(3 * SAMPLE_RATE), block=800))[1]

  async def misbehaving():
    async with client(host) as c:

      async def error_after(message, session_ended):
        await c.ws.send(message)
        _, reply = await c.until("error")
        assert reply["session_ended"] is session_ended, reply
        return reply["message"]

      assert "JSON" in await error_after("{not json", False)
      assert "unknown message type 'stop'" in await error_after('{"type": "stop"}', False)
      assert "unknown keys in start: speed" in await error_after(
        '{"type": "start", "speed": 2}', False
      )
      bad_seed = '{"type": "start", "portrait": "demo", "seed": -1}'
      assert "seed" in await error_after(bad_seed, False)
      unknown = '{"type": "start", "portrait": "nobody"}'
      assert "unknown portrait 'nobody'" in await error_after(unknown, False)
      # A bad control, one the protocol refuses or an emotion only the model can refuse, opens
      # no session (the audio next is refused).
      bad_pose = '{"type": "start", "portrait": "demo", "pose_amplitude": 3}'
      assert '"pose_amplitude" must be a number' in await error_after(bad_pose, False)
      joyful = '{"type": "start", "portrait": "demo", "emotion": "joyful"}'
      assert "unknown emotion 'joyful'; this model knows auto, neutral" in await error_after(
        joyful, False
      )
      assert "audio before a session" in await error_after(speech(640).tobytes(), False)
      assert "end without an open session" in await error_after('{"type": "end"}', False)
      assert "over 4096 bytes" in await error_after(json.dumps({"type": "x" * 5000}), False)

      # Unusable audio ends the open session; the connection stays for the next one.
      for bad, message in [
        (b"\x00" * 6, "6 bytes: not whole float32 samples"),
        (np.array([0.1, np.nan], np.float32).tobytes(), "NaN or infinite"),
        (np.array([np.inf], np.float32).tobytes(), "NaN or infinite"),
        (np.zeros(protocol.MAX_AUDIO_BYTES // 4 + 1, np.float32).tobytes(), "at most 65536 bytes"),
      ]:
        await c.start()
        await c.send_audio(speech(SAMPLE_RATE))
        assert message in await error_after(bad, True)
        assert "end without an open session" in await error_after('{"type": "end"}', False)
      await c.start()
      assert "a session is open" in await error_after(
        '{"type": "start", "portrait": "demo"}', False
      )
      frames, _ = await c.finish(speech(SAMPLE_RATE))
      check_frames(frames, SAMPLE_RATE)

    # A message too large to read at all closes its connection, and only that one.
    async with client(host, max_size=None) as c:
      await c.start()
      await c.ws.send(b"\x00" * (protocol.MAX_WIRE_BYTES + 4))
      with pytest.raises(ConnectionClosed) as closed:
        await c.until("error")
      assert closed.value.rcvd.code == 1009

  async def scenario():
    return (await asyncio.gather(well_behaved(), misbehaving()))[0]

  check_frames(asyncio.run(scenario()), 3 * SAMPLE_RATE)

  async def afterwards():
    async with client(host) as c:
      return (await c.session(speech(SAMPLE_RATE)))[1]

  check_frames(asyncio.run(afterwards()), SAMPLE_RATE)


def test_start_controls_are_checked():
  def start(**keys):
    return protocol.parse_control(json.dumps({"type": "start", "portrait": "demo", **keys}))

  assert start() == protocol.Start("demo", 0)
  assert start(emotion="auto", pose_amplitude=None) == protocol.Start("demo", 0)
  controls = dict(intensity=0.5, pose_amplitude=0, blink_rate=60, audio_guidance=3)
  assert start(emotion="sad", emotion_guidance=1.5, **controls) == protocol.Start(
    "demo", 0, "sad", 0.5, 0.0, 60.0, 3.0, 1.5
  )
  for key, value, message in [
    ("emotion", 1, '"emotion" must be "auto" or one of the model\'s emotion labels'),
    ("intensity", 1.5, '"intensity" must be a number from 0 (neutral) to 1 (full)'),
    ("intensity", True, '"intensity" must be a number'),
    ("pose_amplitude", 2.6, '"pose_amplitude" must be a number from 0 (a still head) to 2.5,'),
    ("pose_amplitude", "auto", '"pose_amplitude" must be a number'),
    ("blink_rate", -1, '"blink_rate" must be a number from 0 to 60 a minute, or absent'),
    ("audio_guidance", float("nan"), '"audio_guidance" must be a number from 0 to 10'),
    ("emotion_guidance", 10**400, '"emotion_guidance" must be a number from 0 to 10'),
    ("emotion_guidance", float("inf"), '"emotion_guidance" must be a number'),
  ]:
    with pytest.raises(protocol.BadMessage, match=re.escape(message)):
      start(**{key: value})


def test_the_engine_puts_the_controls_in_the_sampling_options(app, model):
  engine = app.state.engine
  start = protocol.Start("demo", 7, "happy", 0.5, 0.0, 12.0, 3.0, 1.5)
  options = engine.options(start)
  assert (options.seed, options.emotion, options.emotion_intensity) == (7, "happy", 0.5)
  assert (options.pose_amplitude, options.blink_rate) == (0.0, 12.0)
  assert (options.cfg_scale, options.emotion_cfg_scale) == (3.0, 1.5)
  # Nothing given: the config's options, every control on auto.
  assert engine.options(protocol.Start("demo", 0)) == engine.defaults
  with pytest.raises(UserError, match="unknown emotion 'joyful'"):
    engine.options(protocol.Start("demo", 0, "joyful"))


def test_the_page_can_read_the_controls_and_a_still_happy_session_streams(host, model):
  status, body = get(host, "/controls")
  assert status == 200
  assert json.loads(body) == {
    "emotions": ["neutral", "happy", "sad", "angry"],
    "max_pose_amplitude": 2.5,
    "max_blink_rate": 60.0,
    "max_guidance": 10.0,
    "audio_guidance": model.config.sample.cfg_scale,
    "emotion_guidance": model.config.sample.emotion_cfg_scale,
  }

  # The guidance is the model's own: another would compile the sampler anew.
  controls = dict(emotion="happy", intensity=0.8, pose_amplitude=0, blink_rate=0)

  async def scenario():
    async with client(host) as c:
      return (await c.session(speech(SAMPLE_RATE), **controls))[1]

  check_frames(asyncio.run(scenario()), SAMPLE_RATE)


def test_a_client_that_leaves_frees_its_session(host, app):
  async def scenario():
    async with client(host) as c:
      await c.start()
      await c.send_audio(speech(3 * SAMPLE_RATE))
      await c.ws.recv()  # a frame: the session is writing its video
      assert [s["streaming"] for s in connections(host)] == [True]
      assert ffmpeg_children()
      # Gone without a goodbye: no close frame, the connection just drops.
      c.ws.transport.abort()
    await wait_for(lambda: connections(host) == [], "the server lets the connection go")

  asyncio.run(scenario())
  assert os.listdir(app.state.video_folder) == []
  deadline = time.monotonic() + 10
  while ffmpeg_children():  # the session's encoder is stopped
    assert time.monotonic() < deadline, ffmpeg_children()
    time.sleep(0.05)


class FailingStream:
  """A stream whose model call fails, as a bug in it would."""

  lookahead_ms = 100.0

  def push(self, samples):
    raise RuntimeError("a bug")


def test_a_failure_inside_a_session_closes_only_its_connection(host, app, model, monkeypatch):
  monkeypatch.setattr(model, "stream", lambda portrait, options: FailingStream())

  async def failing():
    async with client(host) as c:
      await c.start()
      await c.send_audio(speech(SAMPLES_PER_FRAME))
      _, reply = await c.until("error")
      assert reply["session_ended"] and "internal error (RuntimeError)" in reply["message"]
      with pytest.raises(ConnectionClosed) as closed:
        await c.ws.recv()
      assert closed.value.rcvd.code == 1011

  asyncio.run(failing())
  monkeypatch.undo()

  async def afterwards():
    async with client(host) as c:
      return (await c.session(speech(SAMPLE_RATE)))[1]

  check_frames(asyncio.run(afterwards()), SAMPLE_RATE)
  wait_until_gone = lambda: connections(host) == [] and os.listdir(app.state.video_folder) == []
  asyncio.run(wait_for(wait_until_gone, "every connection and video is gone"))


def test_a_slow_client_holds_the_server_to_its_frame_bound(model):
  """A client that sends 40 s of audio and reads nothing: the server fills its bounded queue
  and stops reading; what it holds never passes the bound it states, and every frame arrives
  once the client reads."""
  block, blocks = speech(protocol.MAX_AUDIO_BYTES // 4), 40
  # Loopback sockets grow their buffers to megabytes (thousands of these tiny frames). Small
  # ones, as on a slow link, make the client fall behind within seconds of audio: a send buffer
  # on the server's socket (accepted sockets inherit it), a receive buffer and a two-message
  # queue on the client's.
  listening = listen("127.0.0.1", 0)
  listening.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)

  async def scenario(host):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(host.split(":")[1])))
    # No keepalive pings: a client that reads nothing would time its own pings out.
    async with client(host, sock=sock, max_queue=(2, 1), ping_interval=None) as c:
      await c.start()
      sender = asyncio.create_task(c.send_audio(np.tile(block, blocks), len(block)))
      full = lambda: connections(host)[0]["peak_buffered_frames"] >= connection.FRAME_QUEUE
      await wait_for(full, "the server's outbound queue is full")
      held = (await asyncio.to_thread(connections, host))[0]
      reader = asyncio.create_task(c.until("done"))
      await sender  # it may wait for the socket until the client reads
      await c.send_json(type="end")
      frames, done = await reader
    return held, frames, done

  with serving(create_app(model), listening) as host:
    held, frames, done = asyncio.run(scenario(host))
  assert held["buffered_frames"] <= held["peak_buffered_frames"] <= held["frame_bound"]
  # While the client did not read, the server took only a few seconds of its 40.
  assert held["received_samples"] < blocks * len(block) / 3
  assert done["samples"] == blocks * len(block)
  check_frames(frames, done["samples"])


def test_an_uploaded_portrait_is_framed_and_streams(host):
  status, reply = post(
    host, "/portraits", iio.imwrite("<bytes>", data.astronaut(), extension=".png")
  )
  assert status == 200, reply
  status, preview = get(host, reply["preview"])
  assert status == 200 and iio.imread(preview).shape == (16, 16, 3)

  async def scenario():
    async with client(host) as c:
      return (await c.session(speech(SAMPLE_RATE), portrait=reply["portrait"]))[1]

  check_frames(asyncio.run(scenario()), SAMPLE_RATE)

  status, reply = post(host, "/portraits", b"not an image")
  assert status == 400
  assert reply["error"].startswith("cannot read the uploaded image (not an image file")
  assert get(host, "/portraits/nobody.png")[0] == 404
  assert get(host, "/downloads/nothing.mp4")[0] == 404


def test_the_page_and_its_script_are_served(host):
  status, page = get(host, "/")
  assert status == 200 and b'src="/static/client.js"' in page
  status, script = get(host, "/static/client.js")
  assert status == 200 and b"getUserMedia" in script


def _one_line_error(argv, capsys) -> str:
  try:
    code = serve_main.main(argv)
  except SystemExit as e:
    code = e.code
  err = capsys.readouterr().err.strip()
  assert code == 2, err
  assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
  return err


def test_command_line(capsys, tmp_path):
  with pytest.raises(SystemExit) as exit_:
    serve_main.main(["--help"])
  assert exit_.value.code == 0 and "--checkpoint" in capsys.readouterr().out
  assert "70000 is not a port number" in _one_line_error(["--port", "70000"], capsys)
  assert "'web' is not a port number" in _one_line_error(["--port", "web"], capsys)
  assert "unrecognized arguments: --gpu" in _one_line_error(["--gpu"], capsys)
  with socket.create_server(("127.0.0.1", 0)) as taken:
    port = str(taken.getsockname()[1])
    assert f"cannot listen on 127.0.0.1:{port}" in _one_line_error(["--port", port], capsys)
  missing = str(tmp_path / "no-bundle")
  err = _one_line_error(["--port", "0", "--checkpoint", missing], capsys)
  assert f"checkpoint folder {missing} does not exist" in err
