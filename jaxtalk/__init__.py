"""jaxtalk: one portrait + speech audio -> a lip-synced talking-head video, in JAX/Flax."""

__version__ = "0.1.0"
