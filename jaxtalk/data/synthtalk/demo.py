"""The bundled demo inputs: a held-out SynthTalk portrait and an English sentence (espeak-ng).

  python -m jaxtalk.data.synthtalk.demo --out jaxtalk/assets/demo

Both come from the eval split's seed range, past the clips `generate_split` makes, so the demo
identity and speech were never seen in training. The portrait is the identity at rest (mouth
closed, head straight): at sampling time the portrait is all the model knows of the face.
"""

from __future__ import annotations

import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from jaxtalk.cli import argument_parser, run_command
from jaxtalk.data.synthtalk import face, generate, motion
from jaxtalk.media import atomic_output_path
from jaxtalk.media.audio_io import save_wav

# An eval-split clip index far past any generated eval set, whose utterance is English.
DEMO_INDEX = 10_002
DEMO_SECONDS = 8.0
# Spoken happily throughout, head motion and blinks at their defaults.
DEMO_ACTING = motion.Acting.constant("happy")
REST_POSE = np.array([0.0, motion.REST_WIDTH] + [0.0] * (len(motion.MOTION_PARAMS) - 2), np.float32)


def demo_clip(image_size: int = 128, seconds: float = DEMO_SECONDS):
  """The held-out SynthTalk clip the demo inputs come from."""
  return generate.make_clip(
    **generate.clip_seeds("eval", 0, DEMO_INDEX),
    seconds=seconds,
    image_size=image_size,
    speech="tts",
    acting=DEMO_ACTING,
  )


def write_demo_inputs(out_dir, *, image_size: int = 128, seconds: float = DEMO_SECONDS):
  clip = demo_clip(image_size, seconds)
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  with atomic_output_path(str(out_dir / "portrait.png")) as tmp:
    iio.imwrite(tmp, face.render_face(clip.identity, REST_POSE, image_size))
  save_wav(str(out_dir / "speech.wav"), clip.audio)
  return clip


def main(argv=None) -> int:
  parser = argument_parser("python -m jaxtalk.data.synthtalk.demo", __doc__)
  parser.add_argument("--out", required=True, help="folder for portrait.png and speech.wav")
  parser.add_argument("--image-size", type=int, default=128, help="portrait height and width")
  parser.add_argument("--seconds", type=float, default=DEMO_SECONDS, help="length of the speech")
  return run_command(_write_command, parser.parse_args(argv))


def _write_command(args) -> None:
  clip = write_demo_inputs(args.out, image_size=args.image_size, seconds=args.seconds)
  print(f"wrote {args.out}/portrait.png and speech.wav ({clip.meta['clip_id']})")


if __name__ == "__main__":
  sys.exit(main())
