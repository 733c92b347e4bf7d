"""Attention: one entry point, mask objects, and the kernels behind it (see `attention.py`)."""

from jaxtalk.kernels.attention import IMPLEMENTATIONS, attention
from jaxtalk.kernels.masks import BlockCausalMask, FullMask, LocalAudioMask, Mask

__all__ = ["IMPLEMENTATIONS", "attention", "LocalAudioMask", "BlockCausalMask", "FullMask", "Mask"]
