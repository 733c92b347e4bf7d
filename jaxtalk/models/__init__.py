"""The networks, and `factory.Models`, which builds them all from a config.

Stage 1: motion encoder and renderer; stage 2: audio encoder (`audio/`) and motion transformer;
`layers`: blocks they share. Sampling and training both build them through the factory.
"""
