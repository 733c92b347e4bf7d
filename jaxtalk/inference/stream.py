"""The streaming engine: audio in pieces of any size, frames out as soon as they are final.

Every way of sampling goes through it: `TalkingHead.generate` and `sample.py` push a whole file
at once, the web demo pushes microphone blocks, and the output for the same samples and seed is
the same however they were cut (tested).

The clock is the motion model's chunk (`chunk` frames of 40 ms). Audio is cut into *blocks*:
block b holds the features of frames `[b * chunk + radius, (b + 1) * chunk + radius)` (a chunk's
worth, shifted by the motion model's audio radius), encoded from those frames of waveform plus
the audio encoder's `context` frames on each side. A rolling buffer keeps the last
`chunks_in_flight * chunk + 2 * radius` features: exactly the window that advance b of the rolling
sampler reads. So every block encoded is followed by one advance, and every advance from
`chunks_in_flight - 1` on retires one finished chunk of motion latents, which is rendered at once.
Before the audio, the stream starts with silence, as training clips do: `preroll_blocks` blocks of
(mostly) silence fill the feature buffer before advance 0.

Look-ahead: the first frame of chunk c is final once the waveform up to frame
`(c + chunks_in_flight) * chunk + radius + context` has arrived, `lookahead_frames` after that
frame ends. At the end of the audio the stream is padded with silence until its last frame is
final, and cut to `timebase.frames_of(samples)` frames.

Every jitted piece sees one shape per model and schedule (a block of waveform, the feature
buffer, the fixed-size `MotionState`, one chunk of frames), so nothing compiles again for another
length, and nothing held grows with the length of the audio.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxtalk.inference.motion_sampler import RollingSchedule, audio_window_frames
from jaxtalk.timebase import FPS, SAMPLES_PER_FRAME


@dataclasses.dataclass(frozen=True)
class StreamLayout:
  """The engine's arithmetic, in frames: blocks, silence before the audio, look-ahead."""

  chunk: int  # frames per motion chunk, and per audio block
  chunks_in_flight: int
  radius: int  # audio features each side of its frame that the motion model reads
  context: int  # waveform frames each side of a block that the audio encoder must hear
  feature_frames: int  # the feature buffer: the audio window of one advance

  @classmethod
  def of(cls, models, schedule: RollingSchedule) -> StreamLayout:
    motion = models.motion
    return cls(
      chunk=motion.chunk_size,
      chunks_in_flight=schedule.chunks_in_flight,
      radius=motion.audio_radius,
      context=models.audio_encoder.context_frames,
      feature_frames=audio_window_frames(motion, schedule),
    )

  @property
  def preroll_blocks(self) -> int:
    """Blocks encoded before advance 0: enough that with block 0 they fill the feature buffer."""
    return -(-(self.feature_frames - self.chunk) // self.chunk)

  @property
  def window_frames(self) -> int:
    """Waveform frames one block is encoded from."""
    return self.chunk + 2 * self.context

  @property
  def lead_frames(self) -> int:
    """Frames of silence before the audio: where the first pre-roll block's window starts."""
    return self.preroll_blocks * self.chunk - self.radius + self.context

  @property
  def lookahead_frames(self) -> int:
    """Audio frames that must have arrived after a frame's own end before the frame is final
    (for the first frame of a chunk; later frames of the chunk wait less)."""
    return self.chunks_in_flight * self.chunk + self.radius + self.context - 1

  @property
  def lookahead_ms(self) -> float:
    return self.lookahead_frames * 1000 / FPS

  def advances_for(self, num_frames: int) -> int:
    """Advances until every chunk that holds one of `num_frames` frames is finished."""
    return -(-num_frames // self.chunk) + self.chunks_in_flight - 1


def encode_block(encoder, params, window, chunk: int):
  """Features [B, chunk, dim] of the `chunk` frames in the middle of `window`
  [B, (chunk + 2 * encoder.context_frames) frames of samples]: as they come out mid-file."""
  context = encoder.context_frames
  return encoder.apply(params, window)[:, context : context + chunk]


class MotionStream:
  """Audio samples in, final motion latents out: the audio encoder and the rolling sampler.

  `push(samples)` takes float32 16 kHz mono samples of any length and returns the latents
  [n, latent_dim] of the frames now final; `finish()` ends the audio and returns the rest.
  """

  def __init__(self, head, portrait: np.ndarray, options):
    self._head, self._params = head, head.params
    self.schedule = options.schedule
    self.layout = StreamLayout.of(head.models, self.schedule)
    rng = jax.random.fold_in(jax.random.key(options.seed), 1)
    acting = options.acting(head.models.motion.acting_layout)  # checks the controls
    self._state = head.start_motion(
      self._params, portrait, rng, self.schedule, acting, options.guidance
    )
    self._features = head.empty_features(self.layout.feature_frames)
    # Samples from the start of the next block's window on; silence before the audio.
    self._waveform = np.zeros(self.layout.lead_frames * SAMPLES_PER_FRAME, np.float32)
    self._blocks = 0
    self.received = 0  # samples of audio pushed
    self.emitted = 0  # frames returned
    self._finished = False

  def push(self, samples) -> np.ndarray:
    if self._finished:
      raise RuntimeError("push after finish: this stream's audio has ended")
    samples = np.asarray(samples, np.float32).reshape(-1)
    self.received += len(samples)
    self._waveform = np.concatenate([self._waveform, samples])
    latents = self._run()
    self.emitted += len(latents)
    return latents

  def finish(self) -> np.ndarray:
    """Ends the audio: the frames still waiting for audio get silence, as after a training clip."""
    if self._finished:
      raise RuntimeError("finish called twice")
    self._finished = True
    num_frames = self.received // SAMPLES_PER_FRAME
    partial = self.received % SAMPLES_PER_FRAME  # a frame's worth not completed: not in the video
    self._waveform = self._waveform[: len(self._waveform) - partial]
    layout, spf = self.layout, SAMPLES_PER_FRAME
    latents = []
    while self._blocks - layout.preroll_blocks < layout.advances_for(num_frames):
      missing = layout.window_frames * spf - len(self._waveform)
      self._waveform = np.concatenate([self._waveform, np.zeros(max(missing, 0), np.float32)])
      latents.append(self._run())
    rest = np.concatenate(latents) if latents else self._no_latents()
    rest = rest[: max(num_frames - self.emitted, 0)]
    self.emitted += len(rest)
    return rest

  def _run(self) -> np.ndarray:
    """Encodes every block whose window has arrived, and runs the advance that follows each."""
    layout, spf, head = self.layout, SAMPLES_PER_FRAME, self._head
    window, step = layout.window_frames * spf, layout.chunk * spf
    finished = []
    while len(self._waveform) >= window:
      block = self._waveform[None, :window]
      self._features = head.push_features(self._params, self._features, block)
      self._waveform = self._waveform[step:]
      self._blocks += 1
      advance = self._blocks - 1 - layout.preroll_blocks
      if advance < 0:
        continue
      self._state, chunk = head.advance(self._params, self._state, self._features, self.schedule)
      if advance >= layout.chunks_in_flight - 1:
        finished.append(np.asarray(chunk[0]))
    return np.concatenate(finished) if finished else self._no_latents()

  def _no_latents(self) -> np.ndarray:
    return np.zeros((0, self._head.models.latent_dim), np.float32)


class StreamSession:
  """Audio samples in, uint8 frames [n, S, S, 3] out: `MotionStream` with the renderer after it.

  Each finished chunk of motion is rendered as soon as it is final, one chunk per renderer call.
  """

  def __init__(self, head, portrait: np.ndarray, options):
    self._head, self._portrait, self._options = head, portrait, options
    self.motion = MotionStream(head, portrait, options)
    self._noise = head.render_noise(portrait, options.seed)

  @property
  def lookahead_ms(self) -> float:
    return self.motion.layout.lookahead_ms

  def push(self, samples) -> np.ndarray:
    return self._render(self.motion.push(samples))

  def finish(self) -> np.ndarray:
    return self._render(self.motion.finish())

  def _render(self, latents: np.ndarray) -> np.ndarray:
    batches = self._head.render_batches(
      self._portrait, latents, self._noise, self.motion.layout.chunk, self._options.render_steps
    )
    return np.concatenate([np.zeros((0,) + self._portrait.shape, np.uint8), *batches])
