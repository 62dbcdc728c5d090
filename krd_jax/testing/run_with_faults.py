"""`python -m krd_jax` with fault injection installed (see krd_jax.testing.faults).

  KRD_JAX_FAULT=kill@save_write:2 python -m krd_jax.testing.run_with_faults student ...
"""

from krd_jax import __main__ as cli
from krd_jax.testing import faults

if __name__ == "__main__":
  faults.install()
  cli.main()
