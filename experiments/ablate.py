"""Ablation sweeps from a clone: the same as `python -m krd_jax.ablate` (see there).

  python experiments/ablate.py --config=digits_lt --grid "methods.krd.beta=0.5,1" \
      --methods krd,kd --seeds 3 --workdir runs/ablate_beta

(A knob that would not act is refused: `methods.krd.lam` acts only with `use_rrd=true`,
so a lam sweep also sets `--config.methods.krd.use_rrd=true`.)
"""

from krd_jax.ablate import main

if __name__ == "__main__":
  main()
