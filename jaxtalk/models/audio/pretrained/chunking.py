"""Long audio through encoders that see a bounded input: overlapping segments.

Offline (`encode_in_segments`): the encoder-frame axis is cut into chunks; each chunk is encoded in
a segment with `context` frames on both sides (shifted inward at the ends of the file, so every
segment has one shape and all run as one batch), and only the chunk's own frames are kept. Whisper
always uses its 30-second segment; wav2vec2 / HuBERT use a configurable one. The kept frames match a
single pass exactly when the segment covers the file, and otherwise within what attention to audio
beyond the context contributes (measured in tests/test_pretrained_audio_chunks.py).

Streaming, for every encoder alike, is `jaxtalk.inference.stream`: blocks of a motion chunk's
frames, each encoded with the encoder's `context_frames` of audio on both sides.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.models.audio.pretrained.spec import Spec, WhisperSpec
from jaxtalk.timebase import SAMPLES_PER_FRAME


def segment_layout(num_frames: int, segment_frames: int, context_frames: int):
  """Static layout: (first frame of every segment, and per output frame its segment and its index in it).

  Chunks of `segment_frames - 2 * context_frames` frames; each segment starts `context_frames` before
  its chunk, clamped into [0, num_frames - segment_frames].
  """
  chunk = segment_frames - 2 * context_frames
  if chunk < 1:
    raise ValueError(
      f"a segment of {segment_frames} frames leaves no room for {context_frames} frames of context each side"
    )
  num_segments = -(-num_frames // chunk)
  starts = np.clip(
    np.arange(num_segments) * chunk - context_frames, 0, max(num_frames - segment_frames, 0)
  )
  frame = np.arange(num_frames)
  which = frame // chunk
  return starts, which, frame - starts[which]


def encode_in_segments(
  backbone,
  spec: Spec,
  waveform: jax.Array,
  layers: tuple[int, ...],
  segment_frames: int,
  context_frames: int,
) -> jax.Array:
  """Hidden states `layers` of `backbone` for waveform [B, N], segment by segment -> [len(layers), B, T, D].

  `segment_frames` is ignored for Whisper, whose segment is fixed; audio shorter than Whisper's
  segment is padded with silence, as its feature extractor does.
  """
  batch, samples = waveform.shape
  stride = spec.frame_stride
  num_frames = spec.num_frames(samples)
  if isinstance(spec, WhisperSpec):
    segment_samples, segment_frames = spec.segment_samples, spec.segment_samples // stride
    if samples < segment_samples:
      waveform = jnp.pad(waveform, ((0, 0), (0, segment_samples - samples)))
  else:
    segment_samples = spec.samples_for_frames(segment_frames)
  if waveform.shape[1] <= segment_samples:
    states = backbone(waveform[:, :segment_samples])
    return jnp.stack([states[i][:, :num_frames] for i in layers])

  starts, which, local = segment_layout(num_frames, segment_frames, context_frames)
  segments = waveform[:, starts[:, None] * stride + np.arange(segment_samples)]  # [B, W, samples]
  states = backbone(segments.reshape(-1, segment_samples))
  picked = [
    states[i].reshape(batch, len(starts), -1, states[i].shape[-1])[:, which, local] for i in layers
  ]
  return jnp.stack(picked)


def resample_to_video_frames(features: jax.Array, spec: Spec, num_video_frames: int) -> jax.Array:
  """[..., T, D] encoder frames -> [..., num_video_frames, D], linearly interpolated at the centre
  of each video frame (wav2vec2 at 25 fps: between its frames 2i and 2i + 1, 0.38 of the way)."""
  centres = (np.arange(num_video_frames) + 0.5) * SAMPLES_PER_FRAME
  position = np.clip((centres - spec.frame_centre) / spec.frame_stride, 0, features.shape[-2] - 1)
  low = np.floor(position).astype(np.int32)
  high = np.minimum(low + 1, features.shape[-2] - 1)
  weight = jnp.asarray((position - low)[:, None], features.dtype)
  return features[..., low, :] * (1 - weight) + features[..., high, :] * weight
