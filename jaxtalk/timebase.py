"""The one clock of jaxtalk: 16 kHz audio under 25 fps video, 640 samples per frame.

Every clip, feature sequence, motion sequence and video shares it, so a video frame, its motion
latent, its audio feature and its 640 samples of audio are found at the same index, with integer
indexing only. Both rates are fixed rather than configured: the pretrained speech encoders were
trained on 16 kHz audio, 25 fps is the rate of the talking-head corpora (HDTF, VoxCeleb2, MEAD), and
the real-video ingest resamples whatever it is given to these rates.
"""

SAMPLE_RATE = 16_000  # Hz, mono
FPS = 25  # video frames per second
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640: 40 ms of audio per frame


def frames_of(num_samples: int) -> int:
  """Video frames that `num_samples` of audio covers (floor): a generated video has exactly this many."""
  return num_samples // SAMPLES_PER_FRAME
