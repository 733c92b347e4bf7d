"""The bundled demo model moves the portrait's mouth with the bundled speech.

A regression guard for the shipped weights: a retrained bundle whose motion ignores the audio (or
whose renderer ignores the motion) leaves the mouth still and fails here.
"""

from importlib import resources

import numpy as np

from jaxtalk.eval.metrics import pearson
from jaxtalk.inference.generate import SampleOptions, TalkingHead
from jaxtalk.media.audio_io import load_audio
from jaxtalk.media.image_io import load_portrait

DEMO = resources.files("jaxtalk") / "assets" / "demo"
# The mouth of the bundled 64x64 portrait (rows, columns), found by looking at its frames.
MOUTH = (slice(38, 50), slice(22, 42))


def test_demo_mouth_darkens_when_the_speech_is_loud():
  model = TalkingHead.load(str(DEMO / "model"))
  size = model.config.data.image_size
  portrait = load_portrait(str(DEMO / "portrait.png"), size)
  waveform = load_audio(str(DEMO / "speech.wav"), max_seconds=4.0)
  frames = model.generate(portrait, waveform, SampleOptions.from_config(model.config.sample))

  spf = model.samples_per_frame
  loudness = np.sqrt(np.mean(waveform[: len(frames) * spf].reshape(len(frames), spf) ** 2, axis=1))
  mouth_darkness = -frames[:, MOUTH[0], MOUTH[1]].astype(np.float64).mean(axis=(1, 2, 3))
  assert pearson(mouth_darkness, loudness) > 0.3
