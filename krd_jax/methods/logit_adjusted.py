"""Logit-adjusted CE student, no teacher: CE(z + tau log pi).

The bar a distillation method must beat (every comparison table has it).

References:
  Menon et al., Long-tail learning via logit adjustment, ICLR 2021.
"""

from krd_jax.methods import base


def build(counts, tau):
  return base.teacher_free(base.student_ce(counts, "logit_adjusted", tau))


METHOD = base.Method(
    name="logit_adjusted", title="logit-adjusted CE",
    params={"tau": base.Param(1.0, "prior correction strength (1 = Bayes-exact)", low=0.0)},
    build=build)
