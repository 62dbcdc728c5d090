"""Pure-function losses for KRDistill and its long-tail and KD baselines.

Arrays in, float32 per-example [B] or scalar out; no config, no global state.
Per-class constants come from `krd_jax.priors`; reduce per-example losses with
`jnp.mean` or `balanced_mean`. `registry` maps config names to teacher losses;
student methods built from these losses are in `krd_jax.methods`.
"""

from krd_jax.losses.attention import attention_map
from krd_jax.losses.attention import attention_transfer_loss
from krd_jax.losses.contrastive import contrast_loss
from krd_jax.losses.correlation import dist_loss
from krd_jax.losses.hint import hint_loss
from krd_jax.losses.kd import bkd_loss
from krd_jax.losses.kd import dkd_loss
from krd_jax.losses.kd import kd_loss
from krd_jax.losses.kd import standardize_logits
from krd_jax.losses.krdistill import logit_rectified_loss
from krd_jax.losses.krdistill import logit_rectified_relation_loss
from krd_jax.losses.krdistill import rectify_teacher_features
from krd_jax.losses.krdistill import rectify_teacher_logits
from krd_jax.losses.krdistill import representation_rectified_loss
from krd_jax.losses.krdistill import warmup_scale
from krd_jax.losses.long_tail import balanced_mean
from krd_jax.losses.long_tail import balanced_softmax_ce
from krd_jax.losses.long_tail import class_balanced_ce
from krd_jax.losses.long_tail import cross_entropy
from krd_jax.losses.long_tail import ldam_loss
from krd_jax.losses.long_tail import logit_adjusted_ce
from krd_jax.losses.ltkd import group_kl_decomposition
from krd_jax.losses.ltkd import ltkd_loss
from krd_jax.losses.relations import pkt_loss
from krd_jax.losses.review import hcl_loss
from krd_jax.losses.relations import rkd_angle_loss
from krd_jax.losses.relations import rkd_distance_loss
from krd_jax.losses.registry import TEACHER_LOSS_TITLES
from krd_jax.losses.registry import TEACHER_LOSSES
from krd_jax.losses.registry import teacher_loss
from krd_jax.losses.registry import teacher_losses
from krd_jax.losses.registry import teacher_title
from krd_jax.priors import pad_features

__all__ = [
    "attention_map",
    "attention_transfer_loss",
    "contrast_loss",
    "dist_loss",
    "hcl_loss",
    "pkt_loss",
    "rkd_angle_loss",
    "rkd_distance_loss",
    "standardize_logits",
    "TEACHER_LOSSES",
    "TEACHER_LOSS_TITLES",
    "balanced_mean",
    "balanced_softmax_ce",
    "bkd_loss",
    "class_balanced_ce",
    "cross_entropy",
    "dkd_loss",
    "group_kl_decomposition",
    "hint_loss",
    "kd_loss",
    "ldam_loss",
    "logit_adjusted_ce",
    "logit_rectified_loss",
    "logit_rectified_relation_loss",
    "ltkd_loss",
    "pad_features",
    "rectify_teacher_features",
    "rectify_teacher_logits",
    "representation_rectified_loss",
    "teacher_loss",
    "teacher_losses",
    "teacher_title",
    "warmup_scale",
]
