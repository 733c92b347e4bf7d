"""Make a talking-head video from one portrait and a speech recording.

  python sample.py                                  # the bundled demo: demo.mp4
  python sample.py --image me.png --audio hello.wav --out hello.mp4 [--checkpoint DIR]
                   [--steps 6] [--motion-steps 8] [--cfg 2.0] [--seed 0]

Writes H.264 at the model's frame rate (25 fps) with the audio muxed as AAC; the video has one frame
per 40 ms of audio. The file appears only once it is complete.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

from jaxtalk.errors import UserError, run_reporting_user_errors

DEMO = resources.files("jaxtalk") / "assets" / "demo"


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument(
    "--image", default=str(DEMO / "portrait.png"), help="portrait image (png, jpg, ...)"
  )
  p.add_argument(
    "--audio", default=str(DEMO / "speech.wav"), help="speech (wav, flac, ogg, mp3, m4a)"
  )
  p.add_argument("--out", default="demo.mp4", help="output video (.mp4)")
  p.add_argument(
    "--checkpoint",
    default=str(DEMO / "model"),
    help="model bundle folder (a training run's bundle/; default: the bundled demo)",
  )
  p.add_argument("--steps", type=int, help="renderer denoising steps per frame")
  p.add_argument("--motion-steps", type=int, help="motion denoising steps per chunk")
  p.add_argument("--cfg", type=float, help="classifier-free guidance scale on the audio (1 = off)")
  p.add_argument("--seed", type=int, default=0)
  return p.parse_args(argv)


def main(argv=None) -> int:
  return run_reporting_user_errors(make_video, parse_args(argv))


def make_video(args):
  # Inputs first: a bad path should fail in a second, before jax starts.
  from jaxtalk.media.audio_io import load_audio
  from jaxtalk.media.image_io import load_portrait

  if Path(args.out).suffix.lower() != ".mp4":
    raise UserError(f"--out {args.out} must end in .mp4")
  from jaxtalk.inference.bundle import load_bundle

  config, params = load_bundle(args.checkpoint)
  waveform = load_audio(args.audio, config.data.sample_rate, fps=config.data.fps)
  portrait = load_portrait(args.image, config.data.image_size)

  from tqdm import tqdm

  from jaxtalk.inference.generate import SampleOptions, TalkingHead
  from jaxtalk.media.video_io import write_video

  model = TalkingHead(config, params)
  options = SampleOptions.from_config(
    config.sample,
    render_steps=args.steps,
    motion_steps=args.motion_steps,
    cfg_scale=args.cfg,
    seed=args.seed,
  )
  num_frames = model.num_frames(waveform)
  start = time.perf_counter()
  latents = model.motion_latents(waveform, portrait, options)
  with tqdm(total=num_frames, unit="frame", desc="rendering") as bar:

    def frames():
      for batch in model.render_frames(portrait, latents, options):
        bar.update(len(batch))
        yield from batch

    write_video(
      args.out,
      frames(),
      waveform[: num_frames * model.samples_per_frame],
      config.data.sample_rate,
      config.data.fps,
    )
  seconds = num_frames / config.data.fps
  print(
    f"wrote {args.out}: {num_frames} frames ({seconds:.2f} s of video) in "
    f"{time.perf_counter() - start:.1f} s"
  )


if __name__ == "__main__":
  sys.exit(main())
