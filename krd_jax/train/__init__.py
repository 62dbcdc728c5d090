"""Training: train state, jitted data-parallel steps, loops, checkpoints, metrics."""
