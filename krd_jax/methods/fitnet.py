"""FitNet: CE + hint_weight * MSE(r(student hint), teacher hint), r a regressor the
method trains.

The authors' recipe as mdistiller runs it on CIFAR (`FITNET.HINT_LAYER = 2`, `ConvReg`):
the hint is the stage-2 output map of both networks (`hint="stage2"`, the default), the
regressor a convolution to the teacher's channels and size (1x1 where the sizes match,
3x3 stride 2 where the student's map is twice as large) followed by BatchNorm (batch
statistics, as in training mode; its running averages are never read, the regressor runs
only in training, and are not kept) and a ReLU; CE weight 1, hint weight 100, no warm-up.
`hint="pooled"` hints the pooled penultimate features through a linear regressor, for
models without stage maps (the MLP); tables name it as such.

References:
  Romero et al., FitNets: Hints for Thin Deep Nets, ICLR 2015.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from krd_jax import checks
from krd_jax.losses import hint
from krd_jax.methods import base

HINT_STAGE = "stage2"


class ConvRegressor(nn.Module):
  """conv (to the teacher's channels and size) + BatchNorm (batch statistics) + ReLU."""
  channels: int
  stride: int

  @nn.compact
  def __call__(self, x):
    kernel = 1 if self.stride == 1 else 3
    x = nn.Conv(self.channels, (kernel, kernel), strides=self.stride,
                padding=0 if kernel == 1 else 1)(x)
    return nn.relu(nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)(x))


def _regressor(student_map, teacher_map) -> ConvRegressor:
  s, t = student_map.shape[1], teacher_map.shape[1]
  if s not in (t, 2 * t):
    raise ValueError(f"fitnet: a student hint of {s}x{s} against a teacher's of {t}x{t}; "
                     "allowed: equal sizes, or the student's twice the teacher's")
  return ConvRegressor(teacher_map.shape[-1], 1 if s == t else 2)


def build(counts, hint_weight, ce_weight, hint_on):
  ce_fn = base.student_ce(counts, "ce")
  if hint_on == "pooled":
    init_params, regress = base.linear_map()  # to the teacher's feature width
    student_hint = lambda out: base.need(out, "student_features")
    teacher_hint = lambda out: base.need(out, "teacher_features")
    stages = ()
  else:
    student_hint = lambda out: base.need(out, "student_stages")[HINT_STAGE]
    teacher_hint = lambda out: base.need(out, "teacher_stages")[HINT_STAGE]
    stages = (HINT_STAGE,)

    def init_params(rng, example):
      example = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), example)
      return _regressor(student_hint(example), teacher_hint(example)).init(
          rng, student_hint(example))["params"]

    def regress(params, student_map):
      stride = 1 if params["Conv_0"]["kernel"].shape[0] == 1 else 2
      regressor = ConvRegressor(params["Conv_0"]["kernel"].shape[-1], stride)
      return regressor.apply({"params": params}, student_map, mutable=["batch_stats"])[0]

  def fn(out, distill_scale):
    regressed = regress(base.need(out, "params"), student_hint(out))
    target = teacher_hint(out)
    hinted = hint.hint_loss(regressed.reshape(regressed.shape[0], -1),
                            target.reshape(target.shape[0], -1))
    return base.total(ce_weight * ce_fn(out), {"hint": hint_weight * jnp.mean(hinted)},
                      distill_scale)

  return base.StudentObjective(fn, needs_teacher=True, init_params=init_params,
                               student_stages=stages, teacher_stages=stages)


def _stages(hparams):
  stages = () if hparams["hint_on"] == "pooled" else (HINT_STAGE,)
  return stages, stages


METHOD = base.Method(
    name="fitnet", title="FitNet",
    params={"hint_weight": base.weight(100.0, "weight of the hint (feature MSE) term"),
            "ce_weight": base.weight(1.0, "weight of the student's CE term"),
            # Earlier runs hinted pooled features: a folder from before is another run.
            "hint_on": checks.Param(HINT_STAGE, "the hinted layer: the stage-2 map through "
                                    "a conv regressor (the authors'), or 'pooled' features "
                                    "through a linear one (models without stage maps)",
                                    choices=(HINT_STAGE, "pooled"), changes_runs=True),
            "warmup_epochs": base.warmup(default=0)},  # mdistiller's FitNet: none
    build=build, uses_teacher=lambda hp: True, stage_maps=_stages)
