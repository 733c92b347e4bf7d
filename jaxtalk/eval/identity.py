"""Identity: does the video keep the portrait's person, and does the motion latent know who it is?

Preservation is read by the SynthTalk reader: its identity parameters of every frame against its
reading of the portrait, in units of how much that parameter varies between SynthTalk identities
(the reader's training normalisation). Only parameters the reader reads well on held-out faces
count, so reader noise on a parameter it cannot see (eye size) does not pass for identity loss.

Leakage is a linear probe: ridge regression from a per-frame representation to the true identity
parameters, cross-validated over identities (no person is in both the probe's training and test
folds), scored by R^2. On the motion latents near 0 is good: the latent carries motion, the
renderer gets the person from the reference. The same probe on small thumbnails of the frames, a
representation that certainly holds the identity, shows what the probe can find when it is there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxtalk.data.synthtalk.face import IDENTITY_PARAMS, SEED_PARAMS
from jaxtalk.eval.probe import grouped_probe

# Identity parameters are counted for preservation when the reader reads held-out faces' at this
# Pearson or better.
READABLE_PEARSON = 0.8
# Below this many people a linear probe cannot generalise across identities even from features
# that hold them exactly (R^2 0.2 with 20 people, 0.97 with 60, for 40 features in the tests).
PROBE_ENOUGH_IDENTITIES = 60
# Frames per clip the probe uses: frames of one clip share their identity, so more of them add
# little but time.
PROBE_FRAMES_PER_CLIP = 10
THUMBNAIL = 8


def readable_identity_params(reader_accuracy: dict) -> tuple[str, ...]:
  """The identity parameters the reader reads at READABLE_PEARSON or better on held-out faces."""
  return tuple(
    name for name in IDENTITY_PARAMS if reader_accuracy[name]["pearson"] >= READABLE_PEARSON
  )


def identity_error(
  readings: Sequence[dict], portrait_readings: Sequence[dict], scale: dict, params: Sequence[str]
) -> dict:
  """How far each frame's read identity is from the portrait's, in between-identity stds.

  readings / portrait_readings: per clip, the reader's {param: [T]} of the video and {param: [1]}
  of its portrait; scale: {param: between-identity std}. Returns {"error": mean over frames and
  `params` (NaN without any), "per_param": {param: mean error}}. 0 is the portrait's identity exactly; the
  evaluation also scores frames against another person's portrait, the error of a lost identity.
  """
  per_param = {
    name: float(
      np.mean(
        np.concatenate(
          [
            np.abs(read[name] - portrait[name][0]) / scale[name]
            for read, portrait in zip(readings, portrait_readings, strict=True)
          ]
        )
      )
    )
    for name in params
  }
  error = float(np.mean(list(per_param.values()))) if per_param else float("nan")
  return {"error": error, "per_param": per_param}


def probe_frames(num_frames: int) -> np.ndarray:
  """Indices of PROBE_FRAMES_PER_CLIP frames spread evenly over a clip."""
  return np.unique(np.linspace(0, num_frames - 1, PROBE_FRAMES_PER_CLIP).round().astype(int))


def thumbnails(frames: np.ndarray) -> np.ndarray:
  """uint8 `[T, S, S, 3]` -> `[T, THUMBNAIL^2 * 3]` float64 block means (S a multiple of 8)."""
  count, size = frames.shape[:2]
  block = size // THUMBNAIL
  blocks = frames.reshape(count, THUMBNAIL, block, THUMBNAIL, block, 3).astype(np.float64)
  return blocks.mean(axis=(2, 4)).reshape(count, -1) / 255.0


def identity_probe(features: np.ndarray, targets: np.ndarray, groups: np.ndarray) -> dict | None:
  """`probe.grouped_probe` from `features` [N, D] to the identity parameters `targets` [N, P]
  of each row's person (`groups` [N]), the seed parameters left out."""
  # Seed parameters have no appearance of their own: no features could predict them.
  kept = [i for i, name in enumerate(IDENTITY_PARAMS) if name not in SEED_PARAMS]
  return grouped_probe(features, targets[:, kept], groups, [IDENTITY_PARAMS[i] for i in kept])
