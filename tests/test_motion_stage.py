"""Stage 2's latents: clips encoded in order, batched across clip boundaries, looked up by window."""

import jax
import numpy as np

from configs import demo
from jaxtalk.data.clips import Clip, read_clips, write_shards
from jaxtalk.data.frame_codecs import RAW
from jaxtalk.models.factory import Models
from jaxtalk.stages.motion_stage import encode_clips, with_latents


def test_encode_clips_matches_frame_by_frame_encoding(tmp_path):
  config = demo.get_config()
  config.data.image_size = 16
  config.motion_encoder.update(
    grid_size=4, base_channels=4, max_channels=8, num_tokens=2, token_dim=3
  )
  rng = np.random.default_rng(0)
  lengths = [5, 11, 3]
  clips = [
    Clip(
      frames=rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
      audio=np.zeros(n * 640, np.float32),
      meta={"clip_id": str(i)},
    )
    for i, n in enumerate(lengths)
  ]
  # Raw frames: the table is compared with encodings of the exact frames written.
  paths = write_shards(clips, str(tmp_path), "train", clips_per_shard=2, frame_codec=RAW)
  models = Models.from_config(config)
  params = models.motion_encoder.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))
  params = params["params"]
  frames = (clip.frames for clip in read_clips(paths))
  table = list(encode_clips(models, params, frames, batch_frames=4))
  assert [len(t) for t in table] == lengths
  for clip, latents in zip(clips, table):
    np.testing.assert_allclose(latents, models.encode_motion(params, clip.frames), atol=1e-5)

  batch = {
    "clip_index": np.array([1, 0], np.int32),
    "start": np.array([6, 1], np.int32),
    "reference_index": np.array([2, 4], np.int32),
    "audio": np.zeros((2, 8), np.float32),
    "acting": np.ones((2, 3, 9), np.float32),
  }
  out = with_latents(table, window_frames=3)(batch)
  assert out["acting"] is batch["acting"]  # the window's acting controls pass through
  np.testing.assert_array_equal(out["latents"][0], table[1][6:9])
  np.testing.assert_array_equal(out["reference_latent"][1], table[0][4])
