"""One GPU, 256x256: real datasets (HDTF / VoxCeleb2 clips through python -m jaxtalk.data.ingest).

  python -m jaxtalk.data.ingest --videos my_videos/ --out data/talk256 --image-size 256
  python train.py --config configs/gpu256.py --workdir runs/gpu256

The base config is this model; here it gets its data and bfloat16 compute.
"""

from jaxtalk.config import base_config


def get_config():
  config = base_config()
  config.data.train_dir = "data/talk256"
  config.compute_dtype = "bfloat16"
  return config
