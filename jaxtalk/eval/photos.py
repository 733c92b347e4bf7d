"""Real photographs talking: does the mouth move with the speech while the rest stays the photo?

  python -m jaxtalk.eval.photos [--checkpoint BUNDLE] [--audio speech.wav]
                                [--image photo.png ...] [--strip strip.png] [--json photos.json]

No ground truth exists for a real photograph, so the scores ask what a viewer would: for each
portrait (framed as `sample.py` frames it), a video is generated from the speech, and
- `loudness_correlation`: how the mouth region's change from the portrait (mean absolute
  difference over the sync network's `MOUTH_BOX`, in grey levels) follows the speech's loudness (RMS per frame);
- `mouth_motion`: how far the mouth region moves, the 95th percentile over frames of that change;
- `ssim_outside_mouth`: SSIM against the portrait over everything outside the mouth region, mean
  over frames: the photo must stay the photo;
- `portrait_psnr`: the portrait redrawn from its own motion (`TalkingHead.portrait_psnr`), low
  for faces unlike the training faces.
Without --image it talks with the real photographs scikit-image bundles: the astronaut, and faces
of its LFW subset (25 px crops, upsampled to 100 px, so blurred).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

from jaxtalk.cli import argument_parser, print_report, run_command
from jaxtalk.demo import DEMO_BUNDLE, DEMO_SPEECH
from jaxtalk.errors import UserError
from jaxtalk.eval.metrics import pearson
from jaxtalk.eval.syncnet import mouth_box_slices
from jaxtalk.timebase import SAMPLES_PER_FRAME

# Faces of scikit-image's LFW subset used by default (the first that its face detector finds).
LFW_FACES = (0, 1, 3)
LFW_SIDE = 100  # LFW crops are upsampled to this side before framing
STRIP_FRAMES = 6  # frames of each video in the strip


def builtin_photos() -> dict[str, np.ndarray]:
  """{name: uint8 RGB photo} of scikit-image's bundled real faces."""
  import skimage.data

  photos = {"astronaut": skimage.data.astronaut()}
  faces = skimage.data.lfw_subset()
  for index in LFW_FACES:
    grey = Image.fromarray(np.rint(faces[index] * 255).astype(np.uint8))
    grey = np.asarray(grey.resize((LFW_SIDE, LFW_SIDE), Image.Resampling.BICUBIC))
    photos[f"lfw-{index}"] = np.repeat(grey[..., None], 3, axis=-1)
  return photos


def mouth_mask(size: int) -> np.ndarray:
  """bool `[size, size]`, True inside the sync network's mouth box."""
  mask = np.zeros((size, size), bool)
  mask[mouth_box_slices(size)] = True
  return mask


def frame_loudness(waveform: np.ndarray, num_frames: int) -> np.ndarray:
  """RMS of the audio under each video frame, `[num_frames]`."""
  audio = np.zeros(num_frames * SAMPLES_PER_FRAME, np.float32)
  usable = waveform[: len(audio)]
  audio[: len(usable)] = usable
  return np.sqrt(np.mean(audio.reshape(num_frames, SAMPLES_PER_FRAME) ** 2, axis=1))


def photo_scores(frames: np.ndarray, portrait: np.ndarray, waveform: np.ndarray) -> dict:
  """The three scores (module docstring) of generated uint8 `frames` `[T, S, S, 3]`."""
  mask = mouth_mask(portrait.shape[0])
  change = np.abs(frames.astype(np.float32) - portrait.astype(np.float32)).mean(axis=-1)
  mouth_change = change[:, mask].mean(axis=1)
  outside = []
  for frame in frames:
    _, ssim_map = structural_similarity(frame, portrait, channel_axis=-1, data_range=255, full=True)
    outside.append(ssim_map.mean(axis=-1)[~mask].mean())
  loudness = frame_loudness(waveform, len(frames))
  return {
    "loudness_correlation": pearson(mouth_change.astype(np.float64), loudness.astype(np.float64)),
    "mouth_motion": float(np.percentile(mouth_change, 95)),
    "ssim_outside_mouth": float(np.mean(outside)),
    "frames": len(frames),
  }


def talk(model, photos: dict[str, np.ndarray], waveform: np.ndarray, options) -> dict:
  """{name: (portrait, frames, scores)} for every photo, framed as the model's training data."""
  from jaxtalk.media.image_io import frame_portrait

  results = {}
  for name, photo in photos.items():
    portrait = frame_portrait(photo, model.image_size, model.config.data.face_crop_scale)
    frames = model.generate(portrait, waveform, options)
    scores = photo_scores(frames, portrait, waveform)
    scores["portrait_psnr"] = model.portrait_psnr(portrait, options)
    results[name] = (portrait, frames, scores)
  return results


def strip(results: dict, loudness: np.ndarray) -> np.ndarray:
  """One row per photo: the portrait, then `STRIP_FRAMES` frames from the loudest moments."""
  loudest = np.sort(np.argsort(loudness)[-STRIP_FRAMES:])
  rows = []
  for portrait, frames, _ in results.values():
    rows.append(np.concatenate([portrait, *frames[loudest]], axis=1))
  return np.concatenate(rows, axis=0)


def format_report(scores: dict) -> str:
  lines = [
    "real photographs talking (mouth region: its change from the portrait; SSIM outside it):",
    f"  {'photo':<12}{'loudness corr.':>15}{'mouth motion':>14}{'SSIM outside':>14}"
    f"{'redrawn PSNR':>14}",
  ]
  for name, s in scores.items():
    lines.append(
      f"  {name:<12}{s['loudness_correlation']:>15.3f}{s['mouth_motion']:>14.1f}"
      f"{s['ssim_outside_mouth']:>14.3f}{s['portrait_psnr']:>14.1f}"
    )
  lines += [
    "mouth motion: 95th percentile over frames of the mouth region's mean change, grey levels",
    "redrawn PSNR: the portrait redrawn from its own motion (sampling warns below the config's "
    "data.familiar_psnr)",
  ]
  return "\n".join(lines)


def parse_args(argv=None):
  p = argument_parser("python -m jaxtalk.eval.photos", __doc__)
  p.add_argument("--checkpoint", default=str(DEMO_BUNDLE), help="model bundle folder")
  p.add_argument("--audio", default=str(DEMO_SPEECH), help="speech file (default: the demo's)")
  p.add_argument(
    "--image", action="append", help="a portrait photo (repeatable; default: bundled real faces)"
  )
  p.add_argument("--strip", help="PNG to write: each portrait, then frames at the loudest moments")
  p.add_argument("--json", help="file to write the scores to")
  p.add_argument("--seed", type=int, default=0, help="sampling noise seed")
  return p.parse_args(argv)


def main(argv=None) -> int:
  return run_command(_photos_command, parse_args(argv))


def _photos_command(args) -> None:
  from jaxtalk.media import atomic_output_path
  from jaxtalk.media.audio_io import load_audio
  from jaxtalk.media.image_io import read_image

  for out in (args.strip, args.json):
    if out and not Path(out).parent.is_dir():
      raise UserError(f"folder {Path(out).parent} for {out} does not exist")
  waveform = load_audio(args.audio)
  photos = (
    {Path(path).stem: read_image(path) for path in args.image} if args.image else builtin_photos()
  )
  import imageio.v3 as iio

  from jaxtalk.inference.generate import SampleOptions, TalkingHead

  model = TalkingHead.load(args.checkpoint)
  options = SampleOptions.from_config(model.config.sample, seed=args.seed)
  results = talk(model, photos, waveform, options)
  scores = {name: result[2] for name, result in results.items()}
  print_report(format_report(scores), scores, args.json)
  if args.strip:
    frames = next(iter(results.values()))[1]
    with atomic_output_path(args.strip) as tmp:
      iio.imwrite(tmp, strip(results, frame_loudness(waveform, len(frames))), extension=".png")
    print(f"wrote {args.strip}")


if __name__ == "__main__":
  sys.exit(main())
