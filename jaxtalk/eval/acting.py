"""Acting and its controls on held-out SynthTalk, read by the reader (nothing of the model).

  python -m jaxtalk.eval.acting --data data/synthtalk [--checkpoint DIR] [--clips 20]
                                [--control-portraits 4] [--train-clips 200] [--json acting.json]

- **Emotion recognisability.** An emotion classifier (linear discriminant analysis on what the
  reader reads over 2 s windows: brows, mouth corners and width, how far the lids hang, how much
  and how fast the head moves) is fitted on the ground-truth frames of training clips. It then
  labels windows of the held-out clips' ground-truth frames, of videos generated from their audio
  with the emotion left to the model (auto), and of videos generated with an explicit label (each
  clip another emotion than it starts in, so following the label means leaving the portrait's
  and the voice's). Windows that straddle an emotion change are skipped.
- **Controls.** From a few held-out portraits, each speaking several clips' audio in a row:
  pose amplitude auto / 0 / 1 / 2 (the head's within-video std, read, against auto and against 1),
  blink rate 0 / 12 / 30 (blinks a minute, read), and each emotion's intensity 0.25 / 0.5 / 1 (the
  mean of the parameters the emotion moves).
- **Lip sync with controls**: the mouth's Pearson against the ground truth, with the controls on
  auto and with each set.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from collections.abc import Callable

import numpy as np

from jaxtalk.cli import argument_parser, print_report, run_command
from jaxtalk.data.acting import segment_frames
from jaxtalk.data.clips import Clip, read_clips, shard_paths
from jaxtalk.data.synthtalk.motion import MOTION_PARAMS, POSE_PARAMS
from jaxtalk.demo import DEMO_BUNDLE, SHIPPED_READER
from jaxtalk.errors import UserError
from jaxtalk.eval.metrics import blinks_per_minute, lip_sync_scores, std_ratio
from jaxtalk.eval.reader import Reader
from jaxtalk.eval.synthtalk_eval import even_batch, synthtalk_clips
from jaxtalk.inference.generate import SampleOptions, TalkingHead
from jaxtalk.timebase import FPS

WINDOW_FRAMES = 2 * FPS
# A window counts only when this share of its frames is one emotion (changes ramp over 0.4 s).
WINDOW_PURITY = 0.8
HEAD = ("yaw", "pitch", "roll")
POSE_SETTINGS = (None, 0.0, 1.0, 2.0)
BLINK_SETTINGS = (0.0, 12.0, 30.0)
INTENSITIES = (0.25, 0.5, 1.0)
# What each emotion moves, and which way (the direction SynthTalk's faces move it).
EMOTION_SIGNS = {"happy": ("smile", 1.0), "sad": ("smile", -1.0), "angry": ("brow", -1.0)}
CONTROL_CLIPS_PER_VIDEO = 5  # held-out clips' audio spoken in a row by one control portrait


def window_features(reading: dict[str, np.ndarray], start: int, length: int) -> np.ndarray:
  """What tells emotions apart in the frames [start, start + length) of a reading."""
  part = {name: reading[name][start : start + length].astype(np.float64) for name in reading}
  head = np.stack([part[name] for name in HEAD])
  return np.array(
    [
      part["brow"].mean(),
      part["smile"].mean(),
      part["mouth_width"].mean(),
      np.percentile(part["blink"], 25),  # the lids' level between blinks
      head.std(axis=1).mean(),
      np.abs(np.diff(head, axis=1)).mean(),
    ]
  )


def frame_emotions(meta: dict, num_frames: int) -> list[str | None]:
  """Each frame's emotion from a SynthTalk clip's acting meta."""
  labels: list[str | None] = [None] * num_frames
  for segment, frames in segment_frames(meta, num_frames):
    labels[frames] = [segment["emotion"]] * len(range(num_frames)[frames])
  return labels


def labelled_windows(
  reading: dict, labels: list, length: int = WINDOW_FRAMES
) -> list[tuple[np.ndarray, str, int]]:
  """(features, emotion, first frame) of each whole window of `length` frames whose frames are
  mostly one emotion."""
  windows = []
  for start in range(0, len(labels) - length + 1, length):
    inside = labels[start : start + length]
    emotion = max(set(inside), key=inside.count)
    if emotion is not None and inside.count(emotion) >= WINDOW_PURITY * length:
      windows.append((window_features(reading, start, length), emotion, start))
  return windows


@dataclasses.dataclass(frozen=True)
class EmotionClassifier:
  """Linear discriminant analysis: class means, one shared covariance, equal priors."""

  classes: tuple[str, ...]
  weights: np.ndarray  # [features, classes]
  bias: np.ndarray  # [classes]

  @classmethod
  def fit(cls, features: np.ndarray, labels: list[str]) -> EmotionClassifier:
    classes = tuple(sorted(set(labels)))
    labels_array = np.array(labels)
    means = np.stack([features[labels_array == c].mean(axis=0) for c in classes])
    centred = features - means[[classes.index(label) for label in labels]]
    covariance = centred.T @ centred / max(len(features) - len(classes), 1)
    # A little shrinkage keeps a feature that barely varies from dominating.
    covariance += 1e-3 * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
    weights = np.linalg.solve(covariance, means.T)
    bias = -0.5 * np.sum(means.T * weights, axis=0)
    return cls(classes, weights, bias)

  def predict(self, features: np.ndarray) -> list[str]:
    return [self.classes[i] for i in np.argmax(features @ self.weights + self.bias, axis=1)]


def accuracy(classifier: EmotionClassifier, windows: list[tuple[np.ndarray, str, int]]) -> float:
  if not windows:
    return float("nan")
  predicted = classifier.predict(np.stack([w[0] for w in windows]))
  return float(np.mean([p == w[1] for p, w in zip(predicted, windows)]))


def fit_classifier(
  reader: Reader, data_dir: str, num_clips: int, window_frames: int
) -> EmotionClassifier:
  """The classifier, from the reader's readings of training clips' ground-truth frames."""
  windows = []
  for clip in itertools.islice(read_clips(shard_paths(data_dir, "train")), num_clips):
    labels = frame_emotions(clip.meta, len(clip.frames))
    windows += labelled_windows(reader.read(clip.frames), labels, window_frames)
  if not windows:
    raise UserError(
      f"the training clips in {data_dir} are shorter than one {window_frames}-frame window"
    )
  return EmotionClassifier.fit(np.stack([w[0] for w in windows]), [w[1] for w in windows])


def read_generated(
  model: TalkingHead, reader: Reader, portrait, audio, options: SampleOptions, **controls
) -> dict[str, np.ndarray]:
  """The reader's reading of the video generated from `portrait` and `audio` with `options`
  (the `controls` replaced in them)."""
  options = dataclasses.replace(options, **controls)
  latents = model.motion_latents(audio, portrait, options)
  return reader.read(np.concatenate(list(model.render_frames(portrait, latents, options))))


def _other_emotion(emotions: tuple[str, ...], emotion: str, index: int) -> str:
  others = [e for e in emotions if e != emotion]
  return others[index % len(others)]


def emotion_scores(
  model: TalkingHead,
  reader: Reader,
  classifier: EmotionClassifier,
  clips: list[Clip],
  options: SampleOptions,
  window_frames: int,
  progress: Callable[[int], None] | None,
) -> dict:
  """Recognisability on the ground truth, with emotion auto and with an explicit label; the
  mouth's correlation in both generated rows."""
  emotions = tuple(model.models.motion.emotions)
  windows = {"gt_frames": [], "auto": [], "auto_after_change": [], "label": []}
  readings = {"auto": [], "label": []}
  mouth = MOTION_PARAMS.index("mouth_open")
  for index, clip in enumerate(clips):
    labels = frame_emotions(clip.meta, len(clip.frames))
    clip_options = dataclasses.replace(
      options,
      seed=options.seed + index,
      batch_frames=even_batch(len(clip.frames), options.batch_frames),
    )
    windows["gt_frames"] += labelled_windows(reader.read(clip.frames), labels, window_frames)
    auto = read_generated(model, reader, clip.frames[0], clip.audio, clip_options)
    readings["auto"].append(auto)
    for window in labelled_windows(auto, labels, window_frames):
      windows["auto"].append(window)
      if window[1] != labels[0]:
        windows["auto_after_change"].append(window)
    target = _other_emotion(emotions, labels[0], index)
    labelled = read_generated(
      model, reader, clip.frames[0], clip.audio, clip_options, emotion=target
    )
    readings["label"].append(labelled)
    windows["label"] += labelled_windows(labelled, [target] * len(clip.frames), window_frames)
    if progress:
      progress(1)
  truths = [clip.motion[:, mouth].astype(np.float64) for clip in clips]
  return {
    "chance": 1.0 / len(emotions),
    "accuracy": {name: accuracy(classifier, w) for name, w in windows.items()},
    "windows": {name: len(w) for name, w in windows.items()},
    "mouth_pearson": {
      name: lip_sync_scores([r["mouth_open"].astype(np.float64) for r in rs], truths)["pearson"]
      for name, rs in readings.items()
    },
  }


def control_scores(
  model: TalkingHead,
  reader: Reader,
  clips: list[Clip],
  num_portraits: int,
  options: SampleOptions,
  progress: Callable[[int], None] | None,
) -> dict:
  """What pose amplitude, blink rate and emotion intensity do to videos that speak several
  held-out clips' audio in a row, one video per portrait and setting."""
  pose = {str(a): [] for a in POSE_SETTINGS}
  pose_pearson = {str(a): [] for a in POSE_SETTINGS}
  blinks = {str(r): [] for r in BLINK_SETTINGS}
  intensity = {e: {str(i): [] for i in INTENSITIES} for e in EMOTION_SIGNS}
  mouth = MOTION_PARAMS.index("mouth_open")
  for p in range(num_portraits):
    spoken = [
      clips[(p * CONTROL_CLIPS_PER_VIDEO + k) % len(clips)] for k in range(CONTROL_CLIPS_PER_VIDEO)
    ]
    portrait = clips[p].frames[0]
    audio = np.concatenate([c.audio for c in spoken])
    truth = np.concatenate([c.motion[:, mouth] for c in spoken]).astype(np.float64)
    portrait_options = dataclasses.replace(options, seed=options.seed + p)
    for amplitude in POSE_SETTINGS:
      reading = read_generated(
        model, reader, portrait, audio, portrait_options, pose_amplitude=amplitude
      )
      pose[str(amplitude)].append(reading)
      pose_pearson[str(amplitude)].append((reading["mouth_open"].astype(np.float64), truth))
    for rate in BLINK_SETTINGS:
      reading = read_generated(model, reader, portrait, audio, portrait_options, blink_rate=rate)
      blinks[str(rate)].append(blinks_per_minute(reading["blink"]))
    short = len(spoken[0].audio)  # intensity needs no long video: one clip's audio
    for emotion, (name, _) in EMOTION_SIGNS.items():
      for level in INTENSITIES:
        reading = read_generated(
          model,
          reader,
          portrait,
          audio[:short],
          portrait_options,
          emotion=emotion,
          emotion_intensity=level,
        )
        intensity[emotion][str(level)].append(float(reading[name].mean()))
    if progress:
      progress(1)

  def pose_ratio(setting: str, against: str) -> float:
    return float(
      np.mean(
        [
          std_ratio([r[name] for r in pose[setting]], [r[name] for r in pose[against]])
          for name in POSE_PARAMS
        ]
      )
    )

  intensity_means = {
    e: {level: float(np.mean(values)) for level, values in levels.items()}
    for e, levels in intensity.items()
  }
  return {
    "portraits": num_portraits,
    "seconds_per_video": sum(len(c.frames) for c in clips[:CONTROL_CLIPS_PER_VIDEO]) / FPS,
    "pose_std_ratio": {
      setting: {"vs_auto": pose_ratio(setting, "None"), "vs_1": pose_ratio(setting, "1.0")}
      for setting in pose
    },
    "pose_mouth_pearson": {
      setting: lip_sync_scores([a for a, _ in pairs], [b for _, b in pairs])["pearson"]
      for setting, pairs in pose_pearson.items()
    },
    "blinks_per_minute": {rate: float(np.mean(values)) for rate, values in blinks.items()},
    "intensity": {
      e: {
        "parameter": EMOTION_SIGNS[e][0],
        "means": means,
        "monotonic": bool(
          all(
            EMOTION_SIGNS[e][1] * (b - a) > 0
            for a, b in zip(list(means.values()), list(means.values())[1:])
          )
        ),
      }
      for e, means in intensity_means.items()
    },
  }


def evaluate_acting(
  model: TalkingHead,
  data_dir: str,
  reader: Reader,
  *,
  num_clips: int = 20,
  control_portraits: int = 4,
  train_clips: int = 200,
  window_frames: int = WINDOW_FRAMES,
  seed: int = 0,
  emotion_cfg_scale: float | None = None,
  progress: Callable[[int], None] | None = None,
) -> dict:
  """Scores `model`'s acting on `data_dir` (see the module docstring) with the sample options
  of its config (`emotion_cfg_scale`, when given, in place of the config's); a JSON-able dict."""
  start = time.perf_counter()
  options = SampleOptions.from_config(
    model.config.sample, seed=seed, emotion_cfg_scale=emotion_cfg_scale
  )
  classifier = fit_classifier(reader, data_dir, train_clips, window_frames)
  clips = list(synthtalk_clips(data_dir, "eval", num_clips, model.image_size))
  results = {
    "clips": len(clips),
    "train_clips": train_clips,
    "sample_options": dataclasses.asdict(options),
    "window_frames": window_frames,
    "emotion": emotion_scores(model, reader, classifier, clips, options, window_frames, progress),
    "controls": control_scores(model, reader, clips, control_portraits, options, progress),
  }
  results["seconds"] = time.perf_counter() - start
  return results


def format_report(results: dict) -> str:
  emotion, controls = results["emotion"], results["controls"]
  acc = emotion["accuracy"]
  lines = [
    f"emotion recognisability ({results['clips']} held-out clips, "
    f"{results['window_frames'] / FPS:g} s windows; chance "
    f"{emotion['chance']:.2f}; classifier fitted on {results['train_clips']} training clips' "
    f"ground truth):",
    f"  ground-truth frames {acc['gt_frames']:.3f}   generated, emotion auto {acc['auto']:.3f} "
    f"(after a change {acc['auto_after_change']:.3f}, {emotion['windows']['auto_after_change']} "
    f"windows)   generated with another label: follows it {acc['label']:.3f}",
    f"  mouth Pearson: auto {emotion['mouth_pearson']['auto']:.3f}, "
    f"labelled {emotion['mouth_pearson']['label']:.3f}",
    f"controls ({controls['portraits']} portraits, {controls['seconds_per_video']:.0f} s each):",
    "  pose amplitude  "
    + "   ".join(
      f"{s}: {r['vs_auto']:.2f}x auto, {r['vs_1']:.2f}x of 1 (mouth {controls['pose_mouth_pearson'][s]:.3f})"
      for s, r in controls["pose_std_ratio"].items()
    ),
    "  blinks a minute "
    + "   ".join(f"set {s}: {v:.1f}" for s, v in controls["blinks_per_minute"].items()),
  ]
  for e, r in controls["intensity"].items():
    means = "  ".join(f"{level}: {v:+.3f}" for level, v in r["means"].items())
    lines.append(
      f"  {e} intensity -> mean {r['parameter']}: {means}"
      f"  ({'monotonic' if r['monotonic'] else 'NOT monotonic'})"
    )
  lines.append(f"({results['seconds']:.0f} s)")
  return "\n".join(lines)


def parse_args(argv=None):
  p = argument_parser("python -m jaxtalk.eval.acting", __doc__)
  p.add_argument("--checkpoint", default=str(DEMO_BUNDLE), help="model bundle folder")
  p.add_argument("--data", required=True, help="SynthTalk folder with train and eval shards")
  p.add_argument("--clips", type=int, default=20, help="held-out clips scored for emotion")
  p.add_argument(
    "--control-portraits", type=int, default=4, help="held-out portraits the controls are tried on"
  )
  p.add_argument(
    "--train-clips",
    type=int,
    default=200,
    help="training clips the emotion classifier is fitted on",
  )
  p.add_argument("--reader", default=str(SHIPPED_READER), help="SynthTalk reader folder")
  p.add_argument("--seed", type=int, default=0, help="sampling noise seed")
  p.add_argument("--emotion-cfg", type=float, help="emotion guidance (default: the bundle's)")
  p.add_argument("--json", help="file to write the scores to")
  return p.parse_args(argv)


def main(argv=None) -> int:
  return run_command(_acting_command, parse_args(argv))


def _acting_command(args) -> None:
  if min(args.clips, args.control_portraits, args.train_clips) < 1:
    raise UserError("--clips, --control-portraits and --train-clips must be at least 1")
  if not shard_paths(args.data, "eval") or not shard_paths(args.data, "train"):
    raise UserError(f"{args.data} needs SynthTalk train and eval shards")
  from tqdm import tqdm

  model = TalkingHead.load(args.checkpoint)
  reader = Reader.load(args.reader)
  with tqdm(total=args.clips + args.control_portraits, unit="video", desc="acting") as bar:
    results = evaluate_acting(
      model,
      args.data,
      reader,
      num_clips=args.clips,
      control_portraits=args.control_portraits,
      train_clips=args.train_clips,
      seed=args.seed,
      emotion_cfg_scale=args.emotion_cfg,
      progress=bar.update,
    )
  print_report(format_report(results), results, args.json)


if __name__ == "__main__":
  sys.exit(main())
