"""Attention: one entry point, mask objects, and the kernels behind it (see `attention.py`)."""

from jaxtalk.kernels.attention import IMPLEMENTATIONS, attention
from jaxtalk.kernels.masks import AudioWindowMask, BlockCausalMask, FullMask, Mask

__all__ = ["IMPLEMENTATIONS", "attention", "AudioWindowMask", "BlockCausalMask", "FullMask", "Mask"]
