"""Plain cross-entropy student, no teacher: the floor every method is compared with."""

from krd_jax.methods import base


def build(counts):
  return base.teacher_free(base.student_ce(counts, "ce"))


METHOD = base.Method(name="ce", title="CE", params={}, build=build)
