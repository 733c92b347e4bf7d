"""Frame codecs for clip shards: bytes per minute of video and decode speed, on realistic frames.

  python -m jaxtalk.bench.shards [--sizes 256 512] [--frames 50] [--json shards.json]

Two kinds of frames at each size: SynthTalk clips (flat shading, sharp edges) and a photograph
(skimage's astronaut) filmed by a slowly drifting, turning, zooming camera with a little sensor
noise, which stands for real footage. Candidates: raw pixels (also as stored in a shard, where
ArrayRecord's zstd shrinks them), one JPEG or one WebP per frame (Pillow), and H.264 chunks of a
few frames (ffmpeg through imageio-ffmpeg, each chunk starting with a keyframe so it decodes
alone). Everything runs in one thread. "One frame" is what a training window of one frame costs
to decode: a per-frame codec decodes that frame, a chunked one its whole chunk, through ffmpeg.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import imageio_ffmpeg
import numpy as np
from PIL import Image

from jaxtalk.cli import argument_parser, print_report, run_command
from jaxtalk.data import clips
from jaxtalk.data.frame_codecs import JPEG, RAW, FrameCodec
from jaxtalk.errors import UserError
from jaxtalk.timebase import FPS, SAMPLES_PER_FRAME

FRAMES_PER_MINUTE = 60 * FPS
CHUNK_FRAMES = 8
# The H.264 quality jaxtalk writes its own videos at (jaxtalk.media.video_io).
CHUNK_CRF = 18
WEBP_QUALITY = 90


def photo_frames(size: int, count: int, seed: int = 0) -> np.ndarray:
  """[count, size, size, 3] uint8: a photo under a slowly moving camera, with sensor noise."""
  from skimage import data, transform

  photo = data.astronaut().astype(np.float32) / 255
  rng = np.random.default_rng(seed)
  frames = np.empty((count, size, size, 3), np.uint8)
  for t in range(count):
    camera = transform.SimilarityTransform(
      scale=photo.shape[0] / size * (0.8 + 0.03 * np.sin(t / 7)),
      rotation=0.03 * np.sin(t / 9),
      translation=(60 + 12 * np.sin(t / 13), 20 + 8 * np.cos(t / 11)),
    )
    frame = transform.warp(photo, camera, output_shape=(size, size))
    frame += rng.normal(0, 1.5 / 255, frame.shape)
    frames[t] = np.clip(frame * 255 + 0.5, 0, 255)
  return frames


def synthtalk_frames(size: int, count: int) -> np.ndarray:
  from jaxtalk.data.synthtalk import generate

  seconds = count / FPS
  clip = generate.make_clip(3, seconds=seconds, image_size=size, identity_seed=3, utterance_seed=3)
  return clip.frames


def _webp_encode(frame: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(frame).save(buffer, "WEBP", quality=WEBP_QUALITY)
  return buffer.getvalue()


def _webp_decode(data: bytes, size: int) -> np.ndarray:
  del size  # WebP knows its size
  return np.asarray(Image.open(io.BytesIO(data), formats=["WEBP"]).convert("RGB"))


def _ffmpeg(arguments: list[str], stdin: bytes) -> bytes:
  command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-threads", "1"]
  return subprocess.run(command + arguments, input=stdin, capture_output=True, check=True).stdout


def _h264_encode(frames: np.ndarray) -> bytes:
  size = frames.shape[1]
  raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size}x{size}", "-r", str(FPS), "-i", "-"]
  h264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(CHUNK_CRF), "-f", "h264", "-"]
  return _ffmpeg(raw + h264, frames.tobytes())


def _h264_decode(data: bytes, size: int) -> np.ndarray:
  pixels = _ffmpeg(["-f", "h264", "-i", "-", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], data)
  return np.frombuffer(pixels, np.uint8).reshape(-1, size, size, 3)


def psnr(decoded: np.ndarray, original: np.ndarray) -> float | None:
  """dB; None when lossless."""
  mse = np.mean((decoded.astype(np.float64) - original.astype(np.float64)) ** 2)
  return float(10 * np.log10(255.0**2 / mse)) if mse else None


def _timed(fn: Callable[[], object], repeats: int = 1) -> tuple[float, object]:
  """(the fastest of `repeats` runs' seconds, the last result): other work only ever adds time."""
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    seconds.append(time.perf_counter() - start)
  return min(seconds), result


def measure_codec(
  frames: np.ndarray, encode: Callable, decode: Callable, frames_per_unit: int = 1
) -> dict[str, float]:
  """Size, speed and fidelity of a codec that encodes `frames_per_unit` consecutive frames together
  (1: every frame alone; more: chunks, which `encode` and `decode` take and give as [n, S, S, 3])."""
  size = frames.shape[1]
  if frames_per_unit == 1:
    units = list(frames)
  else:
    units = [frames[i : i + frames_per_unit] for i in range(0, len(frames), frames_per_unit)]
  encode_seconds, encoded = _timed(lambda: [encode(unit) for unit in units])
  decode_seconds, decoded = _timed(lambda: [decode(data, size) for data in encoded], repeats=2)
  decoded = np.concatenate([np.reshape(unit, (-1, *frames.shape[1:])) for unit in decoded])
  return {
    "bytes_per_minute": sum(map(len, encoded)) / len(frames) * FRAMES_PER_MINUTE,
    "encode_fps": len(frames) / encode_seconds,
    "decode_fps": len(frames) / decode_seconds,
    "one_frame_ms": 1000 * decode_seconds / len(encoded),
    "psnr": psnr(decoded, frames),
  }


def raw_shard_bytes_per_minute(frames: np.ndarray) -> float:
  """Bytes per minute of raw frames as a shard stores them (ArrayRecord's zstd): what one more
  clip of these frames (with silent audio) adds to a shard, so the file's own overhead is left
  out. Shard files grow in 64 KiB blocks: a few frames of a tiny size may add none."""
  num_frames = len(frames)
  silence = np.zeros(num_frames * SAMPLES_PER_FRAME, np.float32)
  clip = clips.Clip(frames=frames, audio=silence, meta={})
  with tempfile.TemporaryDirectory() as folder:
    (once,) = clips.write_shards([clip], folder, "once", frame_codec=RAW)
    (twice,) = clips.write_shards([clip, clip], folder, "twice", frame_codec=RAW)
    added = os.path.getsize(twice) - os.path.getsize(once)
  return added / num_frames * FRAMES_PER_MINUTE


def codec_results(frames: np.ndarray) -> dict[str, dict[str, float]]:
  """Every candidate's measures on `frames`, by name."""
  per_frame = {
    "raw": RAW,
    "jpeg 90": FrameCodec("jpeg", 90),
    f"jpeg {JPEG.quality} (default)": JPEG,
  }
  results = {
    name: measure_codec(frames, codec.encode, codec.decode) for name, codec in per_frame.items()
  }
  results["raw in a shard (zstd)"] = {"bytes_per_minute": raw_shard_bytes_per_minute(frames)}
  results[f"webp {WEBP_QUALITY}"] = measure_codec(frames, _webp_encode, _webp_decode)
  results[f"h264 crf {CHUNK_CRF}, chunks of {CHUNK_FRAMES}"] = measure_codec(
    frames, _h264_encode, _h264_decode, CHUNK_FRAMES
  )
  return results


def _row(cells: list[str]) -> str:
  return f"{cells[0]:<36}" + "".join(f"{cell:>12}" for cell in cells[1:])


def format_table(results: dict) -> str:
  machine = results["machine"]
  lines = [
    f"clip shard frame codecs, {results['frames']} frames each; one thread on {machine['cpu']}; "
    f"{machine['date']}",
    _row(["frames, codec", "MB/minute", "decode f/s", "1 frame ms", "encode f/s", "PSNR dB"]),
  ]
  for case in results["cases"]:
    lines.append(f"{case['source']} {case['size']}x{case['size']}")
    for name, measures in case["codecs"].items():
      cells = [f"  {name}", f"{measures['bytes_per_minute'] / 1e6:.1f}"]
      if "decode_fps" in measures:
        cells += [
          f"{measures['decode_fps']:.0f}",
          f"{measures['one_frame_ms']:.2f}",
          f"{measures['encode_fps']:.0f}",
          "lossless" if measures["psnr"] is None else f"{measures['psnr']:.1f}",
        ]
      lines.append(_row(cells))
  lines.append(
    "MB/minute: frame bytes per minute of 25 fps video (audio not counted); 1 frame ms: decoding "
    "what holds one frame"
  )
  return "\n".join(lines)


def run(args) -> dict:
  if args.frames < CHUNK_FRAMES or min(args.sizes) < 16:
    raise UserError(f"need --frames >= {CHUNK_FRAMES} and sizes of at least 16 pixels")
  from jaxtalk.bench.machine import describe_machine

  results = {"machine": describe_machine(), "frames": args.frames, "cases": []}
  for size in args.sizes:
    for source, make in (("synthtalk", synthtalk_frames), ("photo", photo_frames)):
      print(f"{source} frames at {size}x{size} ...", file=sys.stderr, flush=True)
      frames = make(size, args.frames)
      case = {"source": source, "size": size, "codecs": codec_results(frames)}
      results["cases"].append(case)
  print_report(format_table(results), results, args.json)
  return results


def parse_args(argv=None):
  parser = argument_parser("python -m jaxtalk.bench.shards", __doc__)
  parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="frame sizes")
  parser.add_argument("--frames", type=int, default=50, help="frames of each kind and size")
  parser.add_argument("--json", help="also write the results to this JSON file")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  return run_command(run, parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
