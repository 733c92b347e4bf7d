"""Diffusion objectives and samplers shared by the renderer and the motion transformer."""
