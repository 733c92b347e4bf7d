"""Model-agnostic training: settings, optimizer, train state, jitted step, checkpoints, progress, loop."""
