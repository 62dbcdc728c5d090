"""FitNet: CE + hint_weight * MSE(r(h_s), h_t), r a regressor the method trains.

The method owns one trained piece, the regressor r from the student's features to the
teacher's width (its `init_params`); the train step keeps it beside the student's
parameters and hands it back to the objective. The authors' recipe as mdistiller runs
it on CIFAR: CE weight 1, hint weight 100, no warm-up, hint on an intermediate stage
(`FITNET.HINT_LAYER = 2`) through a convolutional regressor (conv + BN + ReLU). Here the
hint is on the pooled penultimate features every model of the zoo returns, through a
linear regressor: the same loss on a different layer, named as such in every table
that shows it.

References:
  Romero et al., FitNets: Hints for Thin Deep Nets, ICLR 2015.
"""

import jax.numpy as jnp

from krd_jax.losses import hint
from krd_jax.methods import base


def build(counts, hint_weight, ce_weight):
  ce_fn = base.student_ce(counts, "ce")
  init_params, regress = base.linear_map()  # to the teacher's feature width

  def fn(out, distill_scale):
    features = base.need(out, "student_features")
    hinted = hint.hint_loss(regress(base.need(out, "params"), features),
                            base.need(out, "teacher_features"))
    return base.total(ce_weight * ce_fn(out), {"hint": hint_weight * jnp.mean(hinted)},
                      distill_scale)

  return base.StudentObjective(fn, needs_teacher=True, init_params=init_params)


METHOD = base.Method(
    name="fitnet", title="FitNet",
    params={"hint_weight": base.weight(100.0, "weight of the hint (feature MSE) term"),
            "ce_weight": base.weight(1.0, "weight of the student's CE term"),
            # mdistiller's FitNet has no warm-up.
            "warmup_epochs": base.Param(0, "epochs the hint term ramps over; -1: "
                                        "student.distill_warmup_epochs", low=-1)},
    build=build, uses_teacher=lambda hp: True)
