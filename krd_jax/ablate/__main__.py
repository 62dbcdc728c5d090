"""python -m krd_jax.ablate: the ablation runner (see krd_jax.ablate)."""

from krd_jax.ablate.cli import main

main()
