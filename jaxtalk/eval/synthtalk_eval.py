"""SynthTalk evaluation of a model bundle, read by instruments that share nothing with it.

For every held-out clip (split "eval": identities and utterances never trained on), frame 0 is
the portrait, and four videos are made and read side by side:

    gt_frames   the ground-truth frames themselves: the instruments' own floor
    gt_motion   each GT frame read by the model's motion encoder and redrawn by its renderer: what
                the renderer and the motion latent lose
    generated   motion sampled from the clip's audio with the bundle's sample options, rendered
    audio_free  the same sampler at guidance scale 0 (its unconditional branch only), rendered:
                the ceiling, what the motion model does without hearing anything

Two instruments read every video, neither of them part of the model under test:
- the SynthTalk reader (`jaxtalk.eval.reader`) reads every motion parameter of every frame from
  pixels, compared with SynthTalk's exact ground truth: mouth-opening error, correlation and
  audio-video offset, mouth amplitude, head-pose amplitude and blink rate;
- the sync network (`jaxtalk.eval.syncnet`) scores audio against mouth: LSE-D, LSE-C, offset.
Reconstruction is the PSNR and SSIM of gt_motion against the GT frames. Identity preservation
and leakage are `jaxtalk.eval.identity`, drift over a long rollout `jaxtalk.eval.drift`; FID
(`jaxtalk.eval.fid`) is computed when Inception-v3 weights are given. A sanity check asks the
floor to score best and the ceiling worst, and says so loudly when they do not.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator

import jax
import numpy as np
from skimage.metrics import structural_similarity

from jaxtalk.data.clips import Clip, read_clips, shard_paths
from jaxtalk.data.synthtalk.motion import MOTION_PARAMS, POSE_PARAMS
from jaxtalk.errors import UserError
from jaxtalk.eval import drift
from jaxtalk.eval.fid import fid
from jaxtalk.eval.identity import (
  PROBE_ENOUGH_IDENTITIES,
  identity_error,
  identity_probe,
  probe_frames,
  readable_identity_params,
  thumbnails,
)
from jaxtalk.eval.inception import InceptionFeatures
from jaxtalk.eval.metrics import (
  MAX_OFFSET_FRAMES,
  blinks_per_minute,
  lip_sync_scores,
  offset_curve,
  pearson,
  psnr,
  std_ratio,
)
from jaxtalk.eval.probe import motion_content
from jaxtalk.eval.reader import PARAM_NAMES, Reader
from jaxtalk.eval.syncnet import SyncNet, sync_scores
from jaxtalk.inference.generate import SampleOptions, TalkingHead

ROWS = {
  "gt_frames": "ground-truth frames (floor)",
  "gt_motion": "ground-truth motion, rendered",
  "generated": "generated from the audio",
  "audio_free": "audio-free, cfg 0 (ceiling)",
}
# What a stage-1 model (motion encoder and renderer, no motion model yet) can be scored on.
RENDERER_ROWS = ("gt_frames", "gt_motion")
# Clips whose mouth traces the report draws.
TRACED_CLIPS = 3
STRIP_FRAMES = 8  # frames of each row in `frames_strip`
# FID reads every 4th frame of each row: neighbouring frames add little to the statistics, and
# Inception-v3 at 299 px is most of the evaluation's cost on a CPU. Its floor is the ground-truth
# frames two frames later against those same frames.
FID_STRIDE, FID_FLOOR_SHIFT = 4, 2
OFFSET_CONVENTION = (
  "offset > 0: the video is late (mouth at frame t matches the ground truth at t - offset); "
  f"the reader searches [-{MAX_OFFSET_FRAMES}, {MAX_OFFSET_FRAMES}], the sync network +-15"
)


def even_batch(num_frames: int, max_batch: int) -> int:
  """The smallest batch that covers `num_frames` in as few batches of at most `max_batch` as
  `max_batch` itself would: 100 frames at most 32 a batch -> 4 batches of 25, none padded."""
  batches = -(-num_frames // max_batch)
  return -(-num_frames // batches)


def padded_batches(frames: np.ndarray, batch: int) -> Iterator[tuple[np.ndarray, int]]:
  """(exactly `batch` frames, how many of them are real) over `frames`: one compiled shape."""
  for start in range(0, len(frames), batch):
    chunk = frames[start : start + batch]
    padding = np.zeros((batch - len(chunk),) + chunk.shape[1:], chunk.dtype)
    yield np.concatenate([chunk, padding]), len(chunk)


def synthtalk_clips(data_dir: str, split: str, limit: int, image_size: int) -> Iterator[Clip]:
  """The first `limit` clips of a split, checked to be SynthTalk clips the model can read."""
  for clip in itertools.islice(read_clips(shard_paths(data_dir, split)), limit):
    name = clip.meta.get("clip_id", "?")
    if clip.motion is None:
      raise UserError(
        f"clip {name} in {data_dir} has no ground-truth motion; evaluation needs "
        f"SynthTalk clips (python -m jaxtalk.data.synthtalk --out DIR)"
      )
    if clip.frames.shape[1] != image_size:
      raise UserError(
        f"clip {name} in {data_dir} is {clip.frames.shape[1]}px, the model works at "
        f"{image_size}px; generate the data with --image-size {image_size}"
      )
    yield clip


def motion_scores(readings: list[dict], truths: list[np.ndarray], motion_params) -> dict:
  """A row's reader scores: mouth opening against the ground truth, amplitudes, blink rate."""
  column = lambda name: motion_params.index(name)
  read = lambda name: [r[name].astype(np.float64) for r in readings]
  true = lambda name: [t[:, column(name)].astype(np.float64) for t in truths]
  mouth = lip_sync_scores(read("mouth_open"), true("mouth_open"))
  return {
    "mae": mouth["mae"],
    "pearson": mouth["pearson"],
    "offset": mouth["offset_frames"],
    "mouth_amplitude": std_ratio(read("mouth_open"), true("mouth_open")),
    "pose_amplitude": {name: std_ratio(read(name), true(name)) for name in POSE_PARAMS},
    "blinks_per_minute": float(np.mean([blinks_per_minute(b) for b in read("blink")])),
  }


def by_language(readings: list[dict], truths: list[np.ndarray], languages: list) -> dict:
  """{language: {clips, pearson, mae}} of the mouth opening, for the text-to-speech clips."""
  mouth = MOTION_PARAMS.index("mouth_open")
  scores = {}
  for language in sorted({lang for lang in languages if lang}):
    chosen = [i for i, lang in enumerate(languages) if lang == language]
    mouth_scores = lip_sync_scores(
      [readings[i]["mouth_open"].astype(np.float64) for i in chosen],
      [truths[i][:, mouth].astype(np.float64) for i in chosen],
    )
    scores[language] = {
      "clips": len(chosen),
      "pearson": mouth_scores["pearson"],
      "mae": mouth_scores["mae"],
    }
  return scores


def sync_row(scores: list[dict]) -> dict:
  """Sync-network scores of a row: LSE-D and LSE-C averaged over clips, the median offset."""
  return {
    "lse_d": float(np.mean([s["lse_d"] for s in scores])),
    "lse_c": float(np.mean([s["lse_c"] for s in scores])),
    "sync_offset": int(np.median([s["offset_frames"] for s in scores])),
  }


def ordering_problems(rows: dict) -> list[str]:
  """What is wrong with the rows' order: the floor must score best, the ceiling (when scored)
  worst, by mouth correlation and by sync confidence. Empty when the instruments can be trusted."""
  problems = []
  for key, what in (("pearson", "mouth-opening correlation"), ("lse_c", "sync confidence")):
    floor = rows["gt_frames"][key]
    if floor < max(row[key] for row in rows.values()):
      problems.append(f"the ground-truth frames do not have the best {what} ({floor:.3f})")
    if "audio_free" in rows:
      ceiling = rows["audio_free"][key]
      if ceiling > min(row[key] for row in rows.values()):
        problems.append(f"the audio-free video does not have the worst {what} ({ceiling:.3f})")
  return problems


def ssim(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
  """Per-frame SSIM of uint8 frames [T, H, W, 3] (windows of 7 px, scikit-image's defaults)."""
  return np.array(
    [
      structural_similarity(a, b, channel_axis=-1, data_range=255)
      for a, b in zip(frames, reference)
    ]
  )


def encode_frames(model: TalkingHead, encode, frames: np.ndarray, batch: int) -> np.ndarray:
  """The model's motion latents `[T, latent_dim]` of uint8 frames, `batch` at a time."""
  return np.concatenate(
    [
      np.asarray(encode(model.params["motion_encoder"], padded))[:count]
      for padded, count in padded_batches(frames, batch)
    ]
  )


def other_person_portraits(clips_meta: list[dict], portraits: list[dict]) -> list[dict] | None:
  """For each clip, the portrait reading of the next clip showing someone else (None if nobody)."""
  others = []
  for i, meta in enumerate(clips_meta):
    order = [(i + k) % len(clips_meta) for k in range(1, len(clips_meta))]
    match = [j for j in order if clips_meta[j]["identity_id"] != meta["identity_id"]]
    if not match:
      return None
    others.append(portraits[match[0]])
  return others


def latent_probes(model: TalkingHead, encode, data_dir: str, num_clips: int, batch: int) -> dict:
  """Linear probes on the first `num_clips` eval clips' frames: the identity probes
  (`identity.identity_probe`: "leakage") and the motion latents' `probe.motion_content`."""
  latents, motions, pixels, targets, groups = [], [], [], [], []
  for clip in synthtalk_clips(data_dir, "eval", num_clips, model.image_size):
    shown = probe_frames(len(clip.frames))
    frames = clip.frames[shown]
    latents.append(encode_frames(model, encode, frames, batch))
    motions.append(clip.motion[shown])
    pixels.append(thumbnails(frames))
    targets.append(np.broadcast_to(clip.identity, (len(frames), len(clip.identity))))
    groups.append(clip.meta["identity_id"])
  rows = np.concatenate([[g] * len(frames) for g, frames in zip(groups, latents)])
  targets = np.concatenate(targets).astype(np.float64)
  leakage = {
    "identities": len(np.unique(groups)),
    "motion_latents": identity_probe(np.concatenate(latents).astype(np.float64), targets, rows),
    "frame_thumbnails": identity_probe(np.concatenate(pixels), targets, rows),
  }
  return {"leakage": leakage, "motion": motion_content(latents, motions, groups, MOTION_PARAMS)}


def clip_videos(
  model: TalkingHead, encode, clip: Clip, options: SampleOptions, index: int, renderer_only: bool
) -> dict[str, np.ndarray]:
  """{row name: uint8 video} of one eval clip (the `index`-th): every row of ROWS, or only
  RENDERER_ROWS, all from the clip's first frame as the portrait."""
  batch = even_batch(len(clip.frames), options.batch_frames)
  # Each clip gets its own noise; the batch size is the only shape, so nothing recompiles.
  clip_options = dataclasses.replace(options, seed=options.seed + index, batch_frames=batch)
  portrait = clip.frames[0]
  latents = {"gt_motion": encode_frames(model, encode, clip.frames, batch)}
  if not renderer_only:
    latents["generated"] = model.motion_latents(clip.audio, portrait, clip_options)
    latents["audio_free"] = model.motion_latents(
      clip.audio, portrait, dataclasses.replace(clip_options, cfg_scale=0.0)
    )
  videos = {"gt_frames": clip.frames}
  for name, motion in latents.items():
    videos[name] = np.concatenate(list(model.render_frames(portrait, motion, clip_options)))
  return videos


def frames_strip(
  model: TalkingHead, data_dir: str, *, renderer_only: bool = False, seed: int = 0
) -> np.ndarray:
  """uint8 image: the first eval clip's rows (ground truth, then what the model made of it), one
  row each, `STRIP_FRAMES` evenly spaced frames across; what the evaluation scored, to look at."""
  clip = next(synthtalk_clips(data_dir, "eval", 1, model.image_size))
  options = SampleOptions.from_config(model.config.sample, seed=seed)
  videos = clip_videos(model, jax.jit(model.models.encode_motion), clip, options, 0, renderer_only)
  shown = np.linspace(0, len(clip.frames) - 1, STRIP_FRAMES).round().astype(int)
  return np.concatenate([np.concatenate(list(v[shown]), axis=1) for v in videos.values()])


def evaluate(
  model: TalkingHead,
  data_dir: str,
  reader: Reader,
  syncnet: SyncNet,
  *,
  num_clips: int = 20,
  probe_clips: int = 200,
  drift_minutes: float = 3.0,
  inception: InceptionFeatures | None = None,
  renderer_only: bool = False,
  seed: int = 0,
  progress: Callable[[int], None] | None = None,
) -> dict:
  """Scores `model` on the first `num_clips` eval clips of `data_dir`; a JSON-able dict.

  Keys: clips, frames, seed, sample_options, reader (its held-out accuracy from training, and per
  motion parameter on these clips' ground-truth frames), reconstruction (psnr, ssim), rows (each
  of ROWS: mae, pearson, offset, mouth_amplitude, pose_amplitude, blinks_per_minute, lse_d, lse_c,
  sync_offset, identity_error), identity (preservation per row, the other-person reference, the
  leakage probes on `probe_clips` clips), motion_content (`probe.motion_content` on the same
  clips), drift (a `drift_minutes` rollout; absent at 0), fid
  (with `inception`: per row against the ground-truth frames, see FID_STRIDE),
  ground_truth_blinks_per_minute, curves (what the report figure draws), sanity,
  offset_convention, seconds. `progress(1)` is called after each clip and after the rollout.
  `renderer_only` scores a stage-1 model (no motion model yet): the rows RENDERER_ROWS only, and
  no drift.
  """
  start = time.perf_counter()
  options = SampleOptions.from_config(model.config.sample, seed=seed)
  encode = jax.jit(model.models.encode_motion)
  names = RENDERER_ROWS if renderer_only else tuple(ROWS)
  readings = {name: [] for name in names}
  syncs = {name: [] for name in names}
  truths, portraits, metas, frame_psnr, frame_ssim = [], [], [], [], []
  fid_frames = {name: [] for name in ("reference", *names)}
  for index, clip in enumerate(synthtalk_clips(data_dir, "eval", num_clips, model.image_size)):
    batch = even_batch(len(clip.frames), options.batch_frames)
    videos = clip_videos(model, encode, clip, options, index, renderer_only)
    frame_psnr.append(psnr(videos["gt_motion"], clip.frames))
    frame_ssim.append(ssim(videos["gt_motion"], clip.frames))
    for name, video in videos.items():
      readings[name].append(reader.read(video))
      syncs[name].append(sync_scores(syncnet, video, clip.audio))
      # The floor row is the same video a few frames on; the others are compared with the GT.
      fid_frames[name].append(video[FID_FLOOR_SHIFT if name == "gt_frames" else 0 :: FID_STRIDE])
    fid_frames["reference"].append(clip.frames[::FID_STRIDE])
    truths.append(clip.motion)
    portraits.append(reader.read(clip.frames[:1]))
    metas.append(clip.meta)
    if progress:
      progress(1)
  if not truths:
    raise UserError(f"no eval clips in {data_dir}")

  rows = {
    name: {**motion_scores(readings[name], truths, MOTION_PARAMS), **sync_row(syncs[name])}
    for name in names
  }
  languages = [meta.get("speech", {}).get("language") for meta in metas]
  if any(languages):
    for name in names:
      rows[name]["by_language"] = by_language(readings[name], truths, languages)
  readable = readable_identity_params(reader.accuracy)
  scale = {name: float(reader.std[PARAM_NAMES.index(name)]) for name in readable}
  preservation = {
    name: identity_error(readings[name], portraits, scale, readable) for name in names
  }
  for name in names:
    rows[name]["identity_error"] = preservation[name]["error"]
  others = other_person_portraits(metas, portraits)
  probes = latent_probes(model, encode, data_dir, probe_clips, options.batch_frames)
  results = {
    "clips": len(truths),
    "frames": sum(map(len, truths)),
    "seed": seed,
    "sample_options": dataclasses.asdict(options),
    "reader": {
      "held_out_accuracy": reader.accuracy,
      "on_these_clips": {
        name: pearson(
          np.concatenate([r[name] for r in readings["gt_frames"]]).astype(np.float64),
          np.concatenate([t[:, MOTION_PARAMS.index(name)] for t in truths]).astype(np.float64),
        )
        for name in MOTION_PARAMS
      },
    },
    "reconstruction": {
      "psnr": float(np.mean(np.concatenate(frame_psnr))),
      "ssim": float(np.mean(np.concatenate(frame_ssim))),
      # Frame 0 is the portrait redrawn from its own motion: `TalkingHead.portrait_psnr` of
      # familiar faces, what the config's data.familiar_psnr is set from.
      "portrait_psnr": {
        "min": float(min(p[0] for p in frame_psnr)),
        "median": float(np.median([p[0] for p in frame_psnr])),
      },
    },
    "rows": rows,
    "identity": {
      "params": list(readable),
      "preservation": preservation,
      "other_person": None
      if others is None
      else identity_error(readings["gt_frames"], others, scale, readable)["error"],
      "leakage": probes["leakage"],
    },
    "motion_content": probes["motion"],
    "ground_truth_blinks_per_minute": float(
      np.mean([blinks_per_minute(t[:, MOTION_PARAMS.index("blink")]) for t in truths])
    ),
    "curves": curves(readings, syncs, truths),
    "sanity": ordering_problems(rows),
    "offset_convention": OFFSET_CONVENTION,
  }
  if inception is not None:
    features = {name: inception.features(np.concatenate(f)) for name, f in fid_frames.items()}
    results["fid"] = {
      "frames_per_row": len(features["reference"]),
      "floor": f"gt_frames is the ground truth {FID_FLOOR_SHIFT} frames later",
      "rows": {name: fid(features[name], features["reference"]) for name in names},
    }
  if drift_minutes > 0 and not renderer_only:
    # The clips' batch size again, so rendering the rollout reuses their compiled program.
    rollout_options = dataclasses.replace(options, batch_frames=batch)
    # The rollout speaks like the eval clips: sentences if they are text-to-speech.
    speech = metas[0].get("speech", {}).get("source", "syllables")
    rollout = drift.rollout_clip(drift_minutes, model.image_size, speech)
    results["drift"] = drift.drift_scores(model, rollout, reader, rollout_options, scale, readable)
    if progress:
      progress(1)
  results["seconds"] = time.perf_counter() - start
  return results


def curves(readings: dict, syncs: dict, truths: list[np.ndarray]) -> dict:
  """What the report figure draws: mouth traces of the first clips, the offset curves per row."""
  mouth = MOTION_PARAMS.index("mouth_open")
  names = list(readings)
  true = [t[:, mouth].astype(np.float64) for t in truths]
  offsets = {}
  for name in names:
    lags, curve = offset_curve([r["mouth_open"].astype(np.float64) for r in readings[name]], true)
    offsets[name] = (curve / len(true)).round(4).tolist()
  return {
    "mouth_traces": [
      {"truth": true[i].round(4).tolist()}
      | {name: readings[name][i]["mouth_open"].round(4).tolist() for name in names}
      for i in range(min(TRACED_CLIPS, len(true)))
    ],
    "reader_lags": lags.tolist(),
    "reader_offset_curves": offsets,
    "sync_offsets": syncs["gt_frames"][0]["offsets"],
    "sync_distance_curves": {
      name: np.mean([s["distance_per_offset"] for s in syncs[name]], axis=0).round(4).tolist()
      for name in names
    },
  }


def format_report(results: dict) -> str:
  """The results as a short plain-text table."""
  on_clips = results["reader"]["on_these_clips"]
  lines = [
    f"SynthTalk evaluation: {results['clips']} eval clips ({results['frames']} frames), "
    f"{results['seconds']:.0f} s",
    "reader (independent network) on these clips' ground-truth frames, Pearson: "
    + ", ".join(f"{name} {value:.2f}" for name, value in on_clips.items()),
    f"reconstruction (GT motion rendered): PSNR {results['reconstruction']['psnr']:.2f} dB, "
    f"SSIM {results['reconstruction']['ssim']:.3f}; the portraits redrawn from their own motion: "
    f"PSNR min {results['reconstruction']['portrait_psnr']['min']:.1f}, median "
    f"{results['reconstruction']['portrait_psnr']['median']:.1f} dB (data.familiar_psnr)",
    "",
    f"{'':<32}{'mouth: MAE':>11}{'Pearson':>8}{'offset':>7}{'ampl.':>7}"
    f"{'pose ampl.':>11}{'blinks/min':>11}{'LSE-D':>7}{'LSE-C':>7}{'offset':>7}{'identity':>9}",
  ]
  for name, row in results["rows"].items():
    label = ROWS[name]
    pose = np.mean(list(row["pose_amplitude"].values()))
    lines.append(
      f"  {label:<30}{row['mae']:>11.3f}{row['pearson']:>8.3f}{row['offset']:>+7d}"
      f"{row['mouth_amplitude']:>7.2f}{pose:>11.2f}{row['blinks_per_minute']:>11.1f}"
      f"{row['lse_d']:>7.3f}{row['lse_c']:>7.3f}{row['sync_offset']:>+7d}"
      f"{row['identity_error']:>9.3f}"
    )
  for name, row in results["rows"].items():
    if "by_language" in row:
      lines.append(
        f"  {ROWS[name].split(' (')[0]}, mouth Pearson by language: "
        + ", ".join(
          f"{lang} {s['pearson']:.3f} ({s['clips']} clips)"
          for lang, s in row["by_language"].items()
        )
      )
  identity = results["identity"]
  other = identity["other_person"]
  lines += [
    f"ground truth: {results['ground_truth_blinks_per_minute']:.1f} blinks/min; amplitudes are "
    "std(read) / std(ground truth); mouth columns and pose come from the reader, LSE from the "
    "sync network (SynthTalk-trained: compare models with it, not with published LSE values)",
    results["offset_convention"],
    "identity: the reader's identity parameters of each frame against the portrait's, in "
    f"between-identity stds, over {', '.join(identity['params']) or 'no readable parameter'}; "
    + ("another person's portrait: " + f"{other:.3f}" if other is not None else "one person only"),
    "identity leakage (ridge probe to the identity parameters, R^2 over held-out identities, "
    f"{identity['leakage']['identities']} identities): "
    + ", ".join(
      f"{name.replace('_', ' ')} {'n/a' if probe is None else format(probe['r2'], '.3f')}"
      for name, probe in identity["leakage"].items()
      if name != "identities"
    )
    + " (near 0 for motion latents is good)",
  ]
  if results.get("motion_content"):
    lines.append(
      "motion latents (ridge probe from a frame's latent change to its motion change within the "
      "clip, R^2 over held-out identities; what they miss, the renderer cannot show): "
      + ", ".join(f"{k} {v:.2f}" for k, v in results["motion_content"]["per_param"].items())
    )
  if identity["leakage"]["identities"] < PROBE_ENOUGH_IDENTITIES:
    lines.append(
      f"WARNING: the identity probe saw fewer than {PROBE_ENOUGH_IDENTITIES} people and "
      "under-reads identity; generate more eval clips (python -m jaxtalk.data.synthtalk "
      "--eval-clips 200) and pass --probe-clips 200"
    )
  if "fid" in results:
    scores = results["fid"]["rows"]
    lines.append(
      f"FID (Inception-v3, {results['fid']['frames_per_row']} frames a row, against the GT frames; "
      "only comparable at equal frame counts): "
      + ", ".join(f"{ROWS[name].split(' (')[0]} {value:.2f}" for name, value in scores.items())
      + f" ({results['fid']['floor']})"
    )
  if "drift" in results:
    windows = results["drift"]["windows"]
    ratio = results["drift"]["last_over_first"]
    lines.append(
      f"drift over a {results['drift']['minutes']:.1f} min rollout (mouth MAE / Pearson / pose "
      "ampl. / identity / acting error / blinks a minute (truth) per window): "
      + "; ".join(
        f"{w['mae']:.3f} / {w['pearson']:.2f} / {w['pose_amplitude']:.2f} / "
        f"{w['identity_error']:.2f} / {w['acting_error']:.3f} / {w['blinks_per_minute']:.0f} "
        f"({w['true_blinks_per_minute']:.0f})"
        for w in windows
      )
      + f"; last / first window: MAE x{ratio['mae']:.2f}, identity x{ratio['identity_error']:.2f}"
    )
  if results["sanity"]:
    lines += [f"WARNING: {problem}: do not trust these scores" for problem in results["sanity"]]
  else:
    ceiling = " and the ceiling worst" if "audio_free" in results["rows"] else ""
    lines.append(f"sanity: the floor scores best{ceiling}")
  return "\n".join(lines)
