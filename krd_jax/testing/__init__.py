"""Test machinery that ships with the package but never runs in a normal run.

`faults`: fault injection (kill, SIGTERM, full disk, NaN, slowness) wired in through
`krd_jax.train.hooks` and two Orbax save points; `python -m krd_jax.testing.run_with_faults`
is the CLI with it installed, for the real-process reliability tests.
"""
