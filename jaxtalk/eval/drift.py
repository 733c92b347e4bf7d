"""Drift: one portrait talking for minutes, read window by window against the ground truth.

A long sampler rollout can slowly lose the mouth, freeze the head or morph the face while each
4 s clip looks fine. One held-out SynthTalk clip of several minutes (a person and sentences no
training split holds) is generated, rendered and read by the SynthTalk reader. Each window gets
the lip-sync error and correlation, the mouth and head amplitudes and the identity error, and the
last window is compared with the first. Windows are equal, one per whole minute (three for
3 min, two halves below two minutes).

The rollout's speaker changes emotion every fifth of the way (neutral, happy, sad, angry, neutral),
with head motion and blinks at their defaults, and the model is left to infer the emotion from the
voice: each window also gets how far the read brows, mouth corners and lids sit from the truth's
(`acting_error`: an emotion collapsing to neutral raises it), the head's amplitude against the
truth's (`pose_amplitude`: runaway motion raises it) and the blink rate.
"""

from __future__ import annotations

import numpy as np

from jaxtalk.data.clips import Clip
from jaxtalk.data.synthtalk import generate, motion
from jaxtalk.data.synthtalk.motion import MOTION_PARAMS, POSE_PARAMS
from jaxtalk.eval.identity import identity_error
from jaxtalk.eval.metrics import blinks_per_minute, lip_sync_scores, std_ratio
from jaxtalk.eval.reader import Reader
from jaxtalk.inference.generate import SampleOptions, TalkingHead
from jaxtalk.timebase import FPS

# The eval split's last generation seed: SynthTalk data written with the default seeds never
# holds this person or these sentences, so the rollout is held out from evaluation clips too.
ROLLOUT_GENERATION_SEED = 999_999
# The figure's drift curve: mouth error per bin of this many seconds.
CURVE_BIN_SECONDS = 10


# The emotions the rollout's speaker goes through, each for an equal part of it.
ROLLOUT_EMOTIONS = ("neutral", "happy", "sad", "angry", "neutral")
ROLLOUT_INTENSITY = 0.8
# The parameters an emotion sets a level of (motion.EmotionFace), read against the truth.
ACTING_LEVELS = ("brow", "smile", "blink")


def rollout_acting(num_frames: int) -> motion.Acting:
  """ROLLOUT_EMOTIONS in equal parts of `num_frames`."""
  starts = np.linspace(0, num_frames, len(ROLLOUT_EMOTIONS) + 1).astype(int)[:-1]
  return motion.Acting(
    tuple(
      motion.EmotionSegment(int(start), emotion, 1.0 if emotion == "neutral" else ROLLOUT_INTENSITY)
      for start, emotion in zip(starts, ROLLOUT_EMOTIONS)
    )
  )


def rollout_clip(minutes: float, image_size: int, speech: str = "syllables") -> Clip:
  """A held-out SynthTalk clip of `minutes` minutes at `image_size` px, of `speech` source."""
  seeds = generate.clip_seeds("eval", ROLLOUT_GENERATION_SEED, 0)
  seconds = 60.0 * minutes
  return generate.make_clip(
    **seeds,
    seconds=seconds,
    image_size=image_size,
    speech=speech,
    acting=rollout_acting(generate.num_frames_for(seconds)),
  )


def window_bounds(num_frames: int) -> list[tuple[int, int]]:
  """Equal frame ranges, one per whole minute of `num_frames` and at least two."""
  per_minute = 60 * FPS
  count = max(2, num_frames // per_minute)
  edges = np.linspace(0, num_frames, count + 1).round().astype(int)
  return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def drift_scores(
  model: TalkingHead,
  clip: Clip,
  reader: Reader,
  options: SampleOptions,
  identity_scale: dict,
  identity_params: tuple[str, ...],
) -> dict:
  """Generates `clip`'s whole audio from its first frame in one rollout and scores each window.

  Returns {"minutes", "windows": [{start_s, end_s, mae, pearson, mouth_amplitude,
  pose_amplitude, identity_error, acting_error, blinks_per_minute, true_blinks_per_minute}],
  "last_over_first": {the same but start_s, end_s}, "curve": {"seconds", "mae"}} (ratios > 1 on
  mae, identity_error and acting_error mean the end is worse). acting_error is the mean over
  ACTING_LEVELS of |mean read - mean truth| in the window, in the parameters' units.
  """
  portrait = clip.frames[0]
  latents = model.motion_latents(clip.audio, portrait, options)
  video = np.concatenate(list(model.render_frames(portrait, latents, options)))
  read = reader.read(video)
  portrait_read = reader.read(portrait[None])
  truth = {name: clip.motion[:, i].astype(np.float64) for i, name in enumerate(MOTION_PARAMS)}
  windows = []
  for start, end in window_bounds(len(video)):
    part = lambda series, start=start, end=end: [np.asarray(series, np.float64)[start:end]]
    mouth = lip_sync_scores(part(read["mouth_open"]), part(truth["mouth_open"]))
    pose = [std_ratio(part(read[name]), part(truth[name])) for name in POSE_PARAMS]
    window_read = {name: read[name][start:end] for name in identity_params}
    windows.append(
      {
        "start_s": start / FPS,
        "end_s": end / FPS,
        "mae": mouth["mae"],
        "pearson": mouth["pearson"],
        "mouth_amplitude": std_ratio(part(read["mouth_open"]), part(truth["mouth_open"])),
        "pose_amplitude": float(np.mean(pose)),
        "identity_error": identity_error(
          [window_read], [portrait_read], identity_scale, identity_params
        )["error"],
        "acting_error": float(
          np.mean(
            [
              abs(part(read[name])[0].mean() - part(truth[name])[0].mean())
              for name in ACTING_LEVELS
            ]
          )
        ),
        "blinks_per_minute": blinks_per_minute(read["blink"][start:end]),
        "true_blinks_per_minute": blinks_per_minute(truth["blink"][start:end]),
      }
    )
  first, last = windows[0], windows[-1]
  ratio = lambda key: last[key] / first[key] if first[key] else float("nan")
  bin_frames = CURVE_BIN_SECONDS * FPS
  error = np.abs(read["mouth_open"].astype(np.float64) - truth["mouth_open"])
  starts = range(0, len(error), bin_frames)
  return {
    "minutes": len(video) / FPS / 60.0,
    "windows": windows,
    "last_over_first": {key: ratio(key) for key in windows[0] if key not in ("start_s", "end_s")},
    "curve": {
      "seconds": [(s + min(bin_frames, len(error) - s) / 2) / FPS for s in starts],
      "mae": [float(error[s : s + bin_frames].mean()) for s in starts],
    },
  }
