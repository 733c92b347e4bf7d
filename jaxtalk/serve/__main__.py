"""Serve the live talking-head demo page on this machine.

  python -m jaxtalk.serve [--checkpoint DIR] [--host 127.0.0.1] [--port 8000]

Loads the model once (default: the bundled demo), compiles it on a second of silence, then serves
http://HOST:PORT/ until Ctrl-C. The page needs a microphone permission, which browsers give only to
https pages and to localhost: keep the default host, or reach a remote machine through an ssh
tunnel (ssh -L 8000:127.0.0.1:8000 HOST).
"""

from __future__ import annotations

import argparse
import sys

from jaxtalk.cli import argument_parser, run_command
from jaxtalk.demo import DEMO_BUNDLE


def _port(text: str) -> int:
  try:
    port = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
  if not 0 <= port <= 65535:
    raise argparse.ArgumentTypeError(f"{port} is not a port number (0 to 65535; 0: any free port)")
  return port


def parse_args(argv=None):
  p = argument_parser("python -m jaxtalk.serve", __doc__)
  p.add_argument(
    "--checkpoint",
    default=str(DEMO_BUNDLE),
    help="model bundle folder (a training run's bundle/; default: the bundled demo)",
  )
  p.add_argument("--host", default="127.0.0.1", help="address to listen on")
  p.add_argument("--port", type=_port, default=8000, help="port to listen on (0: any free port)")
  return p.parse_args(argv)


def main(argv=None) -> int:
  return run_command(serve, parse_args(argv))


def serve(args) -> None:
  from jaxtalk.serve.app import create_app, listen, make_server

  # The port first: a port in use should fail in a second, before the model loads.
  with listen(args.host, args.port) as sock:
    from jaxtalk.inference.compilation import enable_persistent_cache
    from jaxtalk.inference.generate import TalkingHead
    from jaxtalk.serve.engine import warm_up
    from jaxtalk.serve.portraits import DEMO_ID

    enable_persistent_cache()  # a restarted server loads its programs instead of compiling
    model = TalkingHead.load(args.checkpoint)
    app = create_app(model)
    print("compiling the model...", flush=True)
    warm_up(model, app.state.portraits.get(DEMO_ID))
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    print(f"jaxtalk live demo: http://{shown_host}:{port}/  (Ctrl-C to stop)", flush=True)
    make_server(app).run(sockets=[sock])


if __name__ == "__main__":
  sys.exit(main())
