"""Ablation sweeps from a clone: the same as `python -m krd_jax.ablate` (see there).

  python experiments/ablate.py --config=digits_lt --grid "methods.krd.lam=0,0.5" \
      --methods krd,kd --seeds 3 --workdir runs/ablate_lam
"""

from krd_jax.ablate import main

if __name__ == "__main__":
  main()
