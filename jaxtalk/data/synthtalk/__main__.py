"""Writes the SynthTalk train and eval splits: `python -m jaxtalk.data.synthtalk --out DIR`.

The defaults make the bundled demo's data: 400 training clips of espeak-ng sentences at 128 px.
"""

import sys
import time

from jaxtalk.cli import argument_parser, run_command
from jaxtalk.data.synthtalk import generate


def main(argv: list[str] | None = None) -> int:
  parser = argument_parser("python -m jaxtalk.data.synthtalk", __doc__)
  parser.add_argument("--out", required=True, help="folder for the ArrayRecord shards")
  parser.add_argument("--train-clips", type=int, default=400)
  parser.add_argument(
    "--eval-clips",
    type=int,
    default=200,
    help="held-out clips (2 per person; the identity probe wants 120+)",
  )
  parser.add_argument("--seconds", type=float, default=4.0, help="length of every clip")
  parser.add_argument(
    "--image-size", type=int, default=128, help="frame height and width in pixels"
  )
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--workers", type=int, default=2, help="processes rendering clips in parallel"
  )
  parser.add_argument(
    "--speech",
    choices=generate.SPEECH_SOURCES,
    default="tts",
    help="text-to-speech sentences (espeak-ng) with phoneme-timed mouths, or the syllable "
    "synthesizer",
  )
  return run_command(_write_splits, parser.parse_args(argv))


def _write_splits(args) -> None:
  for split, num_clips in (("train", args.train_clips), ("eval", args.eval_clips)):
    start = time.perf_counter()
    paths = generate.generate_split(
      args.out,
      split,
      num_clips,
      args.seconds,
      args.image_size,
      args.seed,
      workers=args.workers,
      speech=args.speech,
    )
    print(
      f"{split}: {num_clips} {args.speech} clips of {args.seconds:g} s at "
      f"{args.image_size}x{args.image_size} -> "
      f"{len(paths)} shards in {args.out} ({time.perf_counter() - start:.1f} s)"
    )


if __name__ == "__main__":
  sys.exit(main())
