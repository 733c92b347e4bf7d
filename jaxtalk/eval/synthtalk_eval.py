"""SynthTalk evaluation of a model bundle: renderer reconstruction and lip sync, in one pass.

For every held-out clip (split "eval"), frame 0 is the portrait, and:

- **reconstruction**: the motion encoder reads each ground-truth frame and the renderer re-renders
  it from the portrait and that latent; PSNR against the ground-truth frame.
- **lip sync**: a ridge probe, fit on ground-truth frames of "train" clips, reads the mouth
  opening off the motion latent of a frame. Three motion sources are rendered to video and read
  back the same way (rendered frames -> motion encoder -> probe), so what differs between them
  is the motion alone:
    ground_truth  the latents of the GT frames: the floor, what renderer and probe lose;
    generated     sampled from the clip's audio with the bundle's sample options;
    audio_free    the same sampler at guidance scale 0 (its unconditional branch only): the
                  ceiling, what the motion model does without hearing anything.
  The probe read directly off the GT frames (no rendering) says how good the instrument is.
  SynthTalk's mouth opening is an exact function of the audio, so these are errors against
  ground truth, not against another learned model.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator

import jax
import numpy as np

from jaxtalk.data.clips import Clip, read_clips, shard_paths
from jaxtalk.data.synthtalk.motion import MOTION_PARAMS
from jaxtalk.errors import UserError
from jaxtalk.eval.metrics import MAX_OFFSET_FRAMES, lip_sync_scores, psnr
from jaxtalk.eval.probe import LinearProbe, fit_probe
from jaxtalk.inference.generate import SampleOptions, TalkingHead

MOUTH_OPEN = MOTION_PARAMS.index("mouth_open")
# Rows of the lip-sync table, instrument first, then floor, model under test, ceiling.
LIP_SYNC_ROWS = {
  "probe_on_gt_frames": "probe read off the GT frames (instrument)",
  "ground_truth": "ground-truth motion, rendered (floor)",
  "generated": "generated from the audio, rendered",
  "audio_free": "audio-free (cfg 0), rendered (ceiling)",
}
OFFSET_CONVENTION = (
  "offset_frames > 0: the video is late (mouth at frame t matches the ground "
  f"truth at t - offset); searched in [-{MAX_OFFSET_FRAMES}, {MAX_OFFSET_FRAMES}]"
)


def even_batch(num_frames: int, max_batch: int) -> int:
  """The smallest batch that covers `num_frames` in as few batches of at most `max_batch` as
  `max_batch` itself would: 100 frames at most 32 a batch -> 4 batches of 25, none padded."""
  batches = -(-num_frames // max_batch)
  return -(-num_frames // batches)


class LatentReader:
  """Motion latents [T, latent_dim] of uint8 frames [T, S, S, 3], real or rendered.

  Frames go through the encoder in batches of one size, padded at the end, so one compiled
  program serves every clip of a split.
  """

  def __init__(self, model: TalkingHead):
    self._encode = jax.jit(model.models.encode_motion)
    self._params = model.params["motion_encoder"]

  def __call__(self, frames: np.ndarray, batch: int) -> np.ndarray:
    latents = []
    for start in range(0, len(frames), batch):
      chunk = frames[start : start + batch]
      padded = np.concatenate(
        [chunk, np.zeros((batch - len(chunk),) + chunk.shape[1:], chunk.dtype)]
      )
      latents.append(np.asarray(self._encode(self._params, padded))[: len(chunk)])
    return np.concatenate(latents)


def synthtalk_clips(data_dir: str, split: str, limit: int, config) -> Iterator[Clip]:
  """The first `limit` clips of a split, checked to be SynthTalk clips the model can read."""
  for clip in itertools.islice(read_clips(shard_paths(data_dir, split)), limit):
    name = clip.meta.get("clip_id", "?")
    if clip.motion is None:
      raise UserError(
        f"clip {name} in {data_dir} has no ground-truth motion; evaluation needs "
        f"SynthTalk clips (python -m jaxtalk.data.synthtalk --out DIR)"
      )
    size = config.data.image_size
    if clip.frames.shape[1] != size:
      raise UserError(
        f"clip {name} in {data_dir} is {clip.frames.shape[1]}px, the model works at "
        f"{size}px; generate the data with --image-size {size}"
      )
    yield clip


def fit_mouth_probe(
  read: LatentReader, clips: Iterator[Clip], batch: int
) -> tuple[LinearProbe, dict]:
  """The mouth-opening probe fit on every frame of `clips`, and what it was fit on."""
  latents, targets = [], []
  for clip in clips:
    latents.append(read(clip.frames, even_batch(len(clip.frames), batch)))
    targets.append(clip.motion[:, MOUTH_OPEN])
  if not targets:
    raise UserError("no train clips to fit the mouth-opening probe on")
  latents, truth = np.concatenate(latents), np.concatenate(targets)
  probe = fit_probe(latents, truth)
  return probe, {
    "train_clips": len(targets),
    "train_frames": len(truth),
    "train_mae": float(np.mean(np.abs(probe(latents) - truth))),
  }


def evaluate(
  model: TalkingHead,
  data_dir: str,
  *,
  num_clips: int = 20,
  probe_clips: int = 40,
  seed: int = 0,
  progress: Callable[[int], None] | None = None,
) -> dict:
  """Scores `model` on the first `num_clips` eval clips of `data_dir`; a JSON-able dict.

  Keys: clips, frames, seed, sample_options, probe (fit details), reconstruction_psnr_db,
  lip_sync (for each of LIP_SYNC_ROWS: mae, pearson, offset_frames), offset_convention, seconds.
  `progress(1)` is called after each eval clip.
  """
  start = time.perf_counter()
  options = SampleOptions.from_config(model.config.sample, seed=seed)
  read = LatentReader(model)
  probe, probe_info = fit_mouth_probe(
    read, synthtalk_clips(data_dir, "train", probe_clips, model.config), options.batch_frames
  )

  readings = {name: [] for name in LIP_SYNC_ROWS}
  truths, frame_psnr = [], []
  for index, clip in enumerate(synthtalk_clips(data_dir, "eval", num_clips, model.config)):
    batch = even_batch(len(clip.frames), options.batch_frames)
    # Each clip gets its own noise; the batch size is the only shape, so nothing recompiles.
    clip_options = dataclasses.replace(options, seed=seed + index, batch_frames=batch)
    portrait = clip.frames[0]
    gt_latents = read(clip.frames, batch)
    motions = {
      "ground_truth": gt_latents,
      "generated": model.motion_latents(clip.audio, portrait, clip_options),
      "audio_free": model.motion_latents(
        clip.audio, portrait, dataclasses.replace(clip_options, cfg_scale=0.0)
      ),
    }
    for name, latents in motions.items():
      video = np.concatenate(list(model.render_frames(portrait, latents, clip_options)))
      if name == "ground_truth":
        frame_psnr.append(psnr(video, clip.frames))
      readings[name].append(probe(read(video, batch)))
    readings["probe_on_gt_frames"].append(probe(gt_latents))
    truths.append(clip.motion[:, MOUTH_OPEN].astype(np.float64))
    if progress:
      progress(1)
  if not truths:
    raise UserError(f"no eval clips in {data_dir}")

  return {
    "clips": len(truths),
    "frames": sum(map(len, truths)),
    "seed": seed,
    "sample_options": dataclasses.asdict(options),
    "probe": probe_info,
    "reconstruction_psnr_db": float(np.mean(np.concatenate(frame_psnr))),
    "lip_sync": {name: lip_sync_scores(readings[name], truths) for name in LIP_SYNC_ROWS},
    "offset_convention": OFFSET_CONVENTION,
    "seconds": time.perf_counter() - start,
  }


def format_report(results: dict) -> str:
  """The results as a short plain-text table."""
  probe = results["probe"]
  lines = [
    f"SynthTalk evaluation: {results['clips']} eval clips ({results['frames']} frames), mouth probe "
    f"fit on {probe['train_clips']} train clips ({probe['train_frames']} frames, fit MAE "
    f"{probe['train_mae']:.3f}), {results['seconds']:.0f} s",
    f"renderer reconstruction PSNR: {results['reconstruction_psnr_db']:.2f} dB",
    "",
    f"{'lip sync: mouth opening read by the probe':<46}{'MAE':>8}{'Pearson':>9}{'offset':>8}",
  ]
  for name, label in LIP_SYNC_ROWS.items():
    row = results["lip_sync"][name]
    lines.append(
      f"  {label:<44}{row['mae']:>8.3f}{row['pearson']:>9.3f}{row['offset_frames']:>+8d}"
    )
  lines.append(results["offset_convention"])
  return "\n".join(lines)
