"""Make a talking-head video from one portrait and a speech recording.

  python sample.py                                  # the bundled demo: demo.mp4
  python sample.py --image me.png --audio hello.wav --out hello.mp4 [--checkpoint DIR]
                   [--steps 6] [--motion-steps 8] [--chunks-in-flight 2] [--cfg 2.0] [--seed 0]
                   [--emotion happy --intensity 0.7 --emotion-cfg 1.5]
                   [--pose-amplitude 0] [--blink-rate 12]

Acting controls left out are decided by the model from the speech (auto): the emotion comes from
the voice, head motion and blinks as the model learned them. `--pose-amplitude 0` holds the head
in the portrait's pose (only the face moves), 2 doubles its motion; `--blink-rate 0` never blinks.

Writes H.264 at 25 fps with the audio muxed as AAC; the video has one frame per 40 ms of audio. The
file appears only once it is complete. `--out -` streams a fragmented MP4 to standard output
instead, each frame as soon as it is made (`python sample.py --out - | ffplay -`).

The audio goes through the streaming engine a second at a time, as it would arrive live; the
programs it compiles are kept in a per-user cache (see jaxtalk/inference/compilation.py), so a
second run starts without compiling.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from jaxtalk.cli import argument_parser, run_command
from jaxtalk.demo import DEMO_BUNDLE, DEMO_PORTRAIT, DEMO_SPEECH
from jaxtalk.errors import UserError


def parse_args(argv=None):
  p = argument_parser("sample.py", __doc__)
  p.add_argument("--image", default=str(DEMO_PORTRAIT), help="portrait image (png, jpg, ...)")
  p.add_argument("--audio", default=str(DEMO_SPEECH), help="speech (wav, flac, ogg, mp3, m4a)")
  p.add_argument("--out", default="demo.mp4", help="output video (.mp4), or - for standard output")
  p.add_argument(
    "--checkpoint",
    default=str(DEMO_BUNDLE),
    help="model bundle folder (a training run's bundle/; default: the bundled demo)",
  )
  # Unset sampling options come from the bundle's config (its `sample` section).
  p.add_argument("--steps", type=int, help="renderer denoising steps per frame")
  p.add_argument("--motion-steps", type=int, help="motion denoising steps per chunk")
  p.add_argument(
    "--chunks-in-flight", type=int, help="chunks denoised at once; must divide --motion-steps"
  )
  p.add_argument("--cfg", type=float, help="classifier-free guidance scale on the audio (1 = off)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument(
    "--emotion", default="auto", help="auto (from the voice) or one of the model's emotions"
  )
  p.add_argument(
    "--intensity", type=float, default=1.0, help="emotion intensity, 0 (neutral) to 1 (full)"
  )
  p.add_argument("--emotion-cfg", type=float, help="guidance scale on the emotion (1 = off)")
  p.add_argument(
    "--pose-amplitude",
    type=float,
    help="head motion, times the trained amount (0: still, 2: double; default: auto)",
  )
  p.add_argument("--blink-rate", type=float, help="blinks a minute (0: none; default: auto)")
  return p.parse_args(argv)


def main(argv=None) -> int:
  return run_command(make_video, parse_args(argv))


def make_video(args):
  # Inputs first: a bad path should fail in a second, before jax starts.
  from jaxtalk.media.audio_io import load_audio
  from jaxtalk.media.image_io import load_portrait

  if args.out != "-" and Path(args.out).suffix.lower() != ".mp4":
    raise UserError(f"--out {args.out} must end in .mp4 (or be - for standard output)")
  from jaxtalk.inference.bundle import load_bundle
  from jaxtalk.inference.generate import SampleOptions

  config, params = load_bundle(args.checkpoint)
  options = SampleOptions.from_config(
    config.sample,
    render_steps=args.steps,
    motion_steps=args.motion_steps,
    chunks_in_flight=args.chunks_in_flight,
    cfg_scale=args.cfg,
    emotion_cfg_scale=args.emotion_cfg,
    seed=args.seed,
    emotion=None if args.emotion == "auto" else args.emotion,
    emotion_intensity=args.intensity,
    pose_amplitude=args.pose_amplitude,
    blink_rate=args.blink_rate,
  )
  options.check_controls(tuple(config.motion.emotions))
  waveform = load_audio(args.audio)
  portrait = load_portrait(args.image, config.data.image_size, config.data.face_crop_scale)

  from tqdm import tqdm

  from jaxtalk.inference.compilation import enable_persistent_cache
  from jaxtalk.inference.generate import TalkingHead
  from jaxtalk.media.video_io import VideoWriter
  from jaxtalk.timebase import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, frames_of

  enable_persistent_cache()
  model = TalkingHead(config, params)
  start = time.perf_counter()
  warning = model.unfamiliar_portrait(portrait, options)
  if warning:
    print(warning, file=sys.stderr)
  num_frames = frames_of(len(waveform))
  session = model.stream(portrait, options)
  with (
    VideoWriter(args.out, waveform[: num_frames * SAMPLES_PER_FRAME]) as video,
    tqdm(total=num_frames, unit="frame", desc="generating") as bar,
  ):
    for first in range(0, len(waveform), SAMPLE_RATE):
      frames = session.push(waveform[first : first + SAMPLE_RATE])
      video.write_frames(frames)
      bar.update(len(frames))
    frames = session.finish()
    video.write_frames(frames)
    bar.update(len(frames))
  print(
    f"wrote {args.out}: {num_frames} frames ({num_frames / FPS:.2f} s of video) in "
    f"{time.perf_counter() - start:.1f} s",
    file=sys.stderr if args.out == "-" else sys.stdout,
  )


if __name__ == "__main__":
  sys.exit(main())
