"""The networks: motion encoder and renderer (stage 1), motion transformer (stage 2), shared layers."""
