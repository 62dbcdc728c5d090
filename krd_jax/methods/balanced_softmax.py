"""Balanced Softmax student, no teacher: CE(z + log n_c).

References:
  Ren et al., Balanced Meta-Softmax for long-tailed visual recognition, NeurIPS 2020.
"""

from krd_jax.methods import base


def build(counts):
  return base.teacher_free(base.student_ce(counts, "balanced_softmax"))


METHOD = base.Method(
    name="balanced_softmax", title="Balanced Softmax", params={}, build=build)
