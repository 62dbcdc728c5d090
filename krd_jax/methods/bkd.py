"""Balanced knowledge distillation: CE + kd_weight T^2 KL(q || student), q the teacher's
tempered probabilities reweighted by effective-number weights and renormalised.

References:
  Zhang et al., Balanced knowledge distillation for long-tailed learning, 2021.
"""

import jax.numpy as jnp

from krd_jax import priors
from krd_jax.losses import kd as kd_losses
from krd_jax.methods import base


def build(counts, temperature, kd_weight, beta_en, switch_step: int = 0):
  """`switch_step`: the step the class weights switch on (plain KD before: with equal
  weights the reweighted, renormalised teacher is the teacher)."""
  weights = jnp.asarray(priors.effective_number_weights(counts, beta_en))
  ce_fn = base.student_ce(counts, "ce")

  def fn(out, distill_scale):
    class_weights = weights
    if switch_step > 0:
      on = base.need(out, "step") >= switch_step
      class_weights = jnp.where(on, weights, jnp.ones_like(weights))
    dist = jnp.mean(kd_losses.bkd_loss(out.student_logits, base.need(out, "teacher_logits"),
                                       class_weights, temperature))
    return base.total(ce_fn(out), {"bkd": kd_weight * dist}, distill_scale)

  return base.StudentObjective(fn, needs_teacher=True)


def constants(hparams, context: base.RunContext) -> dict:
  return {"switch_step": hparams["weights_from_epoch"] * context.steps_per_epoch}


METHOD = base.Method(
    name="bkd", title="BKD",
    # T = 2, the authors' (EricZsy/BalancedKnowledgeDistillation train_student.py): the
    # reweighting's correction grows with T (softmax(z/T + log w) =
    # softmax((z + T log w)/T)), so T = 4 over-corrects.
    params={"temperature": base.temperature(2.0),
            "kd_weight": base.weight(1.0, "weight of the distillation term"),
            "beta_en": base.Param(0.9999, "effective-number beta", low=0.0, high=1.0,
                                  high_open=True),
            "weights_from_epoch": base.Param(
                0, "epoch the class weights switch on (plain KD before; the authors use "
                "160 of 200 on CIFAR-10, 0 on CIFAR-100)", low=0),
            "warmup_epochs": base.warmup()},
    build=build, uses_teacher=lambda hp: True, constants=constants,
    build_ignores=("weights_from_epoch",))
