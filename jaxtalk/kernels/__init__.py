"""Attention: one entry point, mask objects, and (later) fast kernels behind it."""
from jaxtalk.kernels.attention import attention
from jaxtalk.kernels.masks import AudioWindowMask, BlockCausalMask, FullMask, Mask

__all__ = ["attention", "AudioWindowMask", "BlockCausalMask", "FullMask", "Mask"]
