"""What ships with the package: the demo model bundle, its portrait and speech, and the
evaluation's reader and sync network.

Plain paths, importable before jax starts, so commands can name them as defaults.
"""

from importlib import resources
from pathlib import Path

DEMO_DIR = Path(str(resources.files("jaxtalk") / "assets" / "demo"))
DEMO_BUNDLE = DEMO_DIR / "model"
DEMO_PORTRAIT = DEMO_DIR / "portrait.png"
DEMO_SPEECH = DEMO_DIR / "speech.wav"
# The evaluation's instruments, trained on the demo's SynthTalk data (128 px, espeak-ng speech).
SHIPPED_READER = DEMO_DIR.parent / "reader"
SHIPPED_SYNCNET = DEMO_DIR.parent / "syncnet"
