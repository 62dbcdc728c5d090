"""CTKD: KD whose temperature is learned adversarially, through a gradient reversal.

The method trains one scalar theta (its `params`, initialised to 1 as the authors'
`Global_T`); the temperature is T = t_start + t_range * sigmoid(GRL(theta)), where the
gradient reversal layer is the identity forward and multiplies the gradient by lambda
backward. lambda follows the authors' cosine curriculum from `reversal_max` (0) to
`reversal_min` (-1) over `reversal_epochs` (10), so the temperature is trained to make
distillation harder, more so as training goes on. The student's objective is KD at that
temperature: ce_weight CE + kd_weight T^2 KL. The authors' CIFAR-100 recipe (their
`scripts/run_cifar_distill.sh`, `helper/loops.py`): CE 0.1, KD 0.9, t_start 1, t_range
20, lambda from 0 to -1 by a cosine over 10 epochs counted from 1; theta is trained by
the student's optimiser (weight decay included).

References:
  Li, Li, Yang, Cheng, Wang, Li, Yang, Curriculum Temperature for Knowledge
  Distillation, AAAI 2023.
"""

import jax
import jax.numpy as jnp

from krd_jax.losses import _common
from krd_jax.methods import base


def reversal_factor(step, steps_per_epoch, epochs, high, low):
  """lambda at optimiser `step`: the authors' cosine from `high` (epoch 0) to `low` (epoch
  `epochs` on), epochs counted from 1 as their loop counts them."""
  epoch = jnp.minimum(step // steps_per_epoch + 1, epochs).astype(jnp.float32)
  return (jnp.cos(epoch * jnp.pi / epochs) + 1.0) * 0.5 * (high - low) + low


def gradient_reversal(x, factor):
  """x forward; the gradient times `factor` backward (Ganin & Lempitsky 2015)."""
  return jax.lax.stop_gradient(x) + factor * (x - jax.lax.stop_gradient(x))


def build(counts, kd_weight, ce_weight, t_start, t_range, reversal_epochs, reversal_max,
          reversal_min, steps_per_epoch):
  ce_fn = base.student_ce(counts, "ce")

  def init_params(rng, example):
    del rng, example
    return {"theta": jnp.ones((), jnp.float32)}

  def temperature(out):
    factor = reversal_factor(base.need(out, "step"), steps_per_epoch, reversal_epochs,
                             reversal_max, reversal_min)
    theta = gradient_reversal(base.need(out, "params")["theta"], factor)
    return t_start + t_range * jax.nn.sigmoid(theta)

  def fn(out, distill_scale):
    t = temperature(out)
    teacher = _common.like(base.need(out, "teacher_logits"), out.student_logits,
                           "teacher_logits", "student_logits")
    kd = jnp.mean(_common.tempered_kl(out.student_logits.astype(jnp.float32), teacher, t))
    loss, metrics = base.total(ce_weight * ce_fn(out), {"kd": kd_weight * kd}, distill_scale)
    return loss, {**metrics, "temperature": jax.lax.stop_gradient(t)}

  return base.StudentObjective(fn, needs_teacher=True, init_params=init_params)


def constants(hparams, context):
  del hparams
  return {"steps_per_epoch": context.steps_per_epoch}


METHOD = base.Method(
    name="ctkd", title="CTKD",
    params={"kd_weight": base.weight(0.9, "weight of the distillation term"),
            "ce_weight": base.weight(0.1, "weight of the student's CE term"),
            "t_start": base.Param(1.0, "the lowest temperature", low=0.0, low_open=True),
            "t_range": base.Param(20.0, "temperature = t_start + t_range sigmoid(theta)",
                                  low=0.0),
            "reversal_epochs": base.Param(10, "epochs of the cosine curriculum of lambda",
                                          low=1),
            "reversal_max": base.Param(0.0, "lambda at the start", high=0.0),
            "reversal_min": base.Param(-1.0, "lambda from reversal_epochs on", high=0.0),
            "warmup_epochs": base.warmup(default=0)},
    build=build, uses_teacher=lambda hp: True, constants=constants)
