"""The bundled demo: 64x64 SynthTalk faces, small enough to train on a 2-core CPU in under an hour.

python -m jaxtalk.data.synthtalk --out data/synthtalk
python train.py --config configs/demo.py --workdir runs/demo
"""

from jaxtalk.config import base_config


def get_config():
  config = base_config()
  config.stage = "all"
  return config
