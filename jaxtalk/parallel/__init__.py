"""Device mesh and shardings: how arrays are laid out over devices, from one CPU to a pod."""
