"""Attention transfer: CE + weight * sum over stages 1-3 of the attention-map loss.

The student's and the teacher's stage maps (each stage's output after its ReLU) are
read from the models' "intermediates" (`krd_jax.models.stage_names`); models without
stage maps (the MLP) are refused with the config. The authors' CIFAR recipe as
mdistiller runs it: p = 2, CE weight 1, AT weight 1000, no warm-up.

References:
  Zagoruyko & Komodakis, Paying More Attention to Attention, ICLR 2017.
"""

import jax.numpy as jnp

from krd_jax.losses import attention
from krd_jax.methods import base

STAGES = ("stage1", "stage2", "stage3")


def build(counts, p, at_weight, ce_weight):
  ce_fn = base.student_ce(counts, "ce")

  def fn(out, distill_scale):
    student, teacher = base.need(out, "student_stages"), base.need(out, "teacher_stages")
    at = sum(jnp.mean(attention.attention_transfer_loss(student[s], teacher[s], p))
             for s in STAGES)
    return base.total(ce_weight * ce_fn(out), {"at": at_weight * at}, distill_scale)

  return base.StudentObjective(fn, needs_teacher=True, student_stages=STAGES,
                               teacher_stages=STAGES)


METHOD = base.Method(
    name="at", title="AT",
    params={"p": base.Param(2.0, "power of the activations in the attention map",
                            low=0.0, low_open=True),
            "at_weight": base.weight(1000.0, "weight of the attention-transfer term"),
            "ce_weight": base.weight(1.0, "weight of the student's CE term"),
            "warmup_epochs": base.warmup(default=0)},
    build=build, uses_teacher=lambda hp: True,
    stage_maps=lambda hp: (STAGES, STAGES))
