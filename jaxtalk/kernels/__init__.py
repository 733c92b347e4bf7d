"""Attention: one entry point, mask objects, and the kernels behind it (see `attention.py`)."""

from jaxtalk.kernels.attention import attention
from jaxtalk.kernels.masks import BlockCausalMask, FullMask, LocalAudioMask, Mask

__all__ = ["attention", "LocalAudioMask", "BlockCausalMask", "FullMask", "Mask"]
