"""KD with logit standardization at its authors' CIFAR-100 settings: both logits
z-scored, then 0.1 CE + 9 T^2 KL at base temperature 2 (the authors' `cfg.py`; the
same objective as `kd` with standardize=True and these weights).

References:
  Sun, Ren, Li, Wang, Cao, Logit Standardization in Knowledge Distillation, CVPR 2024.
"""

from krd_jax.methods import base
from krd_jax.methods import kd


def build(counts, temperature, kd_weight, ce_weight):
  return kd.build(counts, temperature, kd_weight, ce_weight, standardize=True)


METHOD = base.Method(
    name="lskd", title="KD + logit std.",
    params={"temperature": base.temperature(2.0),
            "kd_weight": base.weight(9.0, "weight of the distillation term"),
            "ce_weight": base.weight(0.1, "weight of the student's CE term"),
            "warmup_epochs": base.warmup(default=0)},  # mdistiller's KD: none
    build=build, uses_teacher=lambda hp: True)
