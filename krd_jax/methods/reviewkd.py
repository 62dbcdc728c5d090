"""ReviewKD: the student's stages fused top-down by attention-based fusion (ABF)
modules, each fused map matched to the teacher's stage by the hierarchical context loss.

Read: the student's stage outputs 1-3 and pooled features, the teacher's pre-ReLU stage
outputs 1-3 and pooled features (mdistiller's `feats` and `preact_feats`). Trained: one
ABF per level (1x1 conv + BN to a middle width; where a coarser level feeds it, a 1x1
conv of both to two sigmoid attention maps mixing them; 3x3 conv + BN to the teacher's
width), built from the shapes of one batch (channels and sizes of every stage of both
networks). The fusion modules' BatchNorm normalises with batch statistics, as in training
mode in PyTorch; their running averages, which nothing reads (the modules run only in
training), are not kept. The authors' recipe (mdistiller `reviewkd.yaml`, `cfg.py`): CE 1,
ReviewKD weight 1 (5 for ResNet-32x4 -> ResNet-8x4, the CIFAR recipes set it per pair),
middle width min(512, the student's pooled width), the weight ramped over 20 of 240 epochs.

References:
  Chen, Liu, Zhao, Jia, Distilling Knowledge via Knowledge Review, CVPR 2021.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from krd_jax.losses import review
from krd_jax.methods import base
from krd_jax.models import layers

STUDENT_STAGES = ("stage1", "stage2", "stage3")
TEACHER_STAGES = ("stage1_preact", "stage2_preact", "stage3_preact")
# kaiming_uniform_(a=1) of the authors' ABF convolutions: U(+-sqrt(3 / fan_in)).
_ABF_KERNEL = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


def _batch_norm():
  return nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)


def _upsample(x: jax.Array, size: int) -> jax.Array:
  """Nearest-neighbour upsampling of [B, h, h, C] to size x size (size a multiple of h),
  as F.interpolate(mode="nearest") does for integer factors."""
  factor = size // x.shape[1]
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


class ABF(nn.Module):
  """One attention-based fusion module: returns (output [B, h, w, out], its middle map
  [B, h, w, mid], the residual the next finer level fuses)."""
  mid: int
  out: int
  fuse: bool

  @nn.compact
  def __call__(self, x, residual=None):
    x = _batch_norm()(nn.Conv(self.mid, (1, 1), use_bias=False, kernel_init=_ABF_KERNEL)(x))
    if self.fuse:
      residual = _upsample(residual, x.shape[1])
      both = jnp.concatenate([x, residual], axis=-1)
      attention = nn.sigmoid(nn.Conv(2, (1, 1), kernel_init=layers.torch_default_kernel,
                                     bias_init=layers.torch_default_bias(both.shape[-1]))(both))
      x = x * attention[..., :1] + residual * attention[..., 1:]
    y = _batch_norm()(nn.Conv(self.out, (3, 3), padding=1, use_bias=False,
                              kernel_init=_ABF_KERNEL)(x))
    return y, x


class ReviewFusion(nn.Module):
  """The ABFs of every level, coarsest (pooled) first: maps of the student's levels
  (finest first) -> fused maps at the teacher's widths (finest first)."""
  mid: int
  outs: Sequence[int]  # the teacher's width per level, finest first

  @nn.compact
  def __call__(self, student_levels):
    levels = list(student_levels)[::-1]
    outs = list(self.outs)[::-1]
    fused, residual = ABF(self.mid, outs[0], fuse=False, name="abf0")(levels[0])
    results = [fused]
    for k, (x, out) in enumerate(zip(levels[1:], outs[1:])):
      fused, residual = ABF(self.mid, out, fuse=True, name=f"abf{k + 1}")(x, residual)
      results.insert(0, fused)
    return results


def _levels(stages, names, pooled):
  """The maps of every level, finest first: the named stages, then the pooled features
  as a 1x1 map."""
  return [stages[n] for n in names] + [pooled[:, None, None, :]]


def build(counts, review_weight, ce_weight):
  ce_fn = base.student_ce(counts, "ce")

  def fusion(example):
    teacher = _levels(base.need(example, "teacher_stages"), TEACHER_STAGES,
                      base.need(example, "teacher_features"))
    student_pooled = base.need(example, "student_features").shape[-1]
    return ReviewFusion(mid=min(512, student_pooled), outs=[t.shape[-1] for t in teacher])

  def init_params(rng, example):
    example = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), example)  # one batch of 2
    student = _levels(base.need(example, "student_stages"), STUDENT_STAGES,
                      base.need(example, "student_features"))
    return fusion(example).init(rng, student)["params"]

  def fn(out, distill_scale):
    student = _levels(base.need(out, "student_stages"), STUDENT_STAGES,
                      base.need(out, "student_features"))
    teacher = _levels(base.need(out, "teacher_stages"), TEACHER_STAGES,
                      base.need(out, "teacher_features"))
    fused, _ = fusion(out).apply({"params": base.need(out, "params")}, student,
                                 mutable=["batch_stats"])
    hcl = sum(jnp.mean(review.hcl_loss(f, t)) for f, t in zip(fused, teacher))
    return base.total(ce_weight * ce_fn(out), {"review": review_weight * hcl}, distill_scale)

  return base.StudentObjective(fn, needs_teacher=True, init_params=init_params,
                               student_stages=STUDENT_STAGES, teacher_stages=TEACHER_STAGES)


METHOD = base.Method(
    name="reviewkd", title="ReviewKD",
    params={"review_weight": base.weight(1.0, "weight of the HCL term"),
            "ce_weight": base.weight(1.0, "weight of the student's CE term"),
            "warmup_epochs": base.warmup()},
    build=build, uses_teacher=lambda hp: True,
    stage_maps=lambda hp: (STUDENT_STAGES, TEACHER_STAGES))
