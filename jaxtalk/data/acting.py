"""Acting controls as the motion model reads them: one vector per frame.

A clip's meta may say how it is acted (SynthTalk's always does; a labelled real dataset such as one
with emotion and intensity per clip can too):

    meta["acting"] = {
      "segments": [{"start": 0, "emotion": "sad", "intensity": 0.7, "blink_rate": 9.5}, ...],
      "pose_amplitude": 1.3,
    }

Every key but "start" is optional. A frame's vector holds three groups, each with a flag that says
whether it is given; a group that is not given (unlabelled data, a control left on auto, or dropped
in training for guidance) is all zeros:

    emotion         one-hot over the model's emotions, times the intensity, and its flag
    pose amplitude  times the default head motion (0: the head holds the reference's pose), flag
    blink rate      blinks a minute / 30, and its flag

The same vector is what sampling builds from the user's controls, held for the whole video.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxtalk.errors import UserError

# Blink rates enter the model divided by this, to sit near 1.
BLINK_RATE_SCALE = 30.0
# Controls past these were never seen in training (SynthTalk's draws reach 2.25 and 43 a minute).
MAX_POSE_AMPLITUDE = 2.5
MAX_BLINK_RATE = 60.0


@dataclasses.dataclass(frozen=True)
class ActingLayout:
  """Where each group sits in the vector of a model that knows `emotions`."""

  emotions: tuple[str, ...]

  @property
  def width(self) -> int:
    return len(self.emotions) + 5

  @property
  def emotion_group(self) -> slice:
    return slice(0, len(self.emotions) + 1)

  @property
  def pose_group(self) -> slice:
    start = len(self.emotions) + 1
    return slice(start, start + 2)

  @property
  def blink_group(self) -> slice:
    start = len(self.emotions) + 3
    return slice(start, start + 2)

  def group_mask(self, group: slice) -> np.ndarray:
    """float [width]: 1 inside `group`."""
    mask = np.zeros(self.width, np.float32)
    mask[group] = 1.0
    return mask

  def vector(
    self,
    emotion: str | None = None,
    intensity: float = 1.0,
    pose_amplitude: float | None = None,
    blink_rate: float | None = None,
  ) -> np.ndarray:
    """float [width]: the controls given (None: auto, the model decides from the audio)."""
    check_controls(self.emotions, emotion, intensity, pose_amplitude, blink_rate)
    out = np.zeros(self.width, np.float32)
    if emotion is not None:
      out[self.emotions.index(emotion)] = intensity
      out[len(self.emotions)] = 1.0
    if pose_amplitude is not None:
      out[self.pose_group] = (pose_amplitude, 1.0)
    if blink_rate is not None:
      out[self.blink_group] = (blink_rate / BLINK_RATE_SCALE, 1.0)
    return out

  def track(self, meta: dict, num_frames: int) -> np.ndarray:
    """float [T, width]: the clip's acting per frame (zeros where its meta says nothing)."""
    out = np.zeros((num_frames, self.width), np.float32)
    acting = meta.get("acting")
    if not acting:
      return out
    amplitude = acting.get("pose_amplitude")
    if amplitude is not None:
      out[:, self.pose_group] = (amplitude, 1.0)
    for segment, frames in segment_frames(meta, num_frames):
      if segment.get("emotion") in self.emotions:
        out[frames, self.emotions.index(segment["emotion"])] = segment.get("intensity", 1.0)
        out[frames, len(self.emotions)] = 1.0
      if segment.get("blink_rate") is not None:
        out[frames, self.blink_group] = (segment["blink_rate"] / BLINK_RATE_SCALE, 1.0)
    return out


def segment_frames(meta: dict, num_frames: int) -> list[tuple[dict, slice]]:
  """(segment, its frames) of each segment in a clip's meta["acting"], in time order; a segment
  lasts until the next one starts."""
  segments = sorted(meta.get("acting", {}).get("segments", ()), key=lambda s: s["start"])
  ends = [s["start"] for s in segments[1:]] + [num_frames]
  return [(segment, slice(segment["start"], end)) for segment, end in zip(segments, ends)]


def check_controls(
  emotions: tuple[str, ...],
  emotion: str | None,
  intensity: float,
  pose_amplitude: float | None,
  blink_rate: float | None,
) -> None:
  """One-line errors for controls the model cannot take."""
  if emotion is not None and emotion not in emotions:
    raise UserError(f"unknown emotion {emotion!r}; this model knows auto, {', '.join(emotions)}")
  if not 0.0 <= intensity <= 1.0:
    raise UserError(f"emotion intensity is {intensity}; use 0 (neutral) to 1 (full)")
  if pose_amplitude is not None and not 0.0 <= pose_amplitude <= MAX_POSE_AMPLITUDE:
    raise UserError(
      f"pose amplitude is {pose_amplitude}; use 0 (still) to {MAX_POSE_AMPLITUDE:g} (1: as trained)"
    )
  if blink_rate is not None and not 0.0 <= blink_rate <= MAX_BLINK_RATE:
    raise UserError(f"blink rate is {blink_rate} a minute; use 0 (no blinks) to {MAX_BLINK_RATE:g}")
