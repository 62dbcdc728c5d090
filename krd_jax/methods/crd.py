"""CRD: CE + weight * (NCE of student embeddings against the teacher bank + NCE of
teacher embeddings against the student bank).

What the method trains: two linear embeddings (student and teacher pooled features to
128-d, L2-normalised). What it keeps untrained, as its state: the two banks [N, 128]
(one slot per training example, momentum-updated with this batch's embeddings every
step) and the two normalisation constants Z (set from the first batch's mean score,
then fixed). It reads each example's training-set index (a source with stable indices:
in memory, not streamed) and a key for its K negatives, drawn from other classes (the
authors' "exact" mode). The authors' CIFAR-100 recipe (mdistiller `crd.yaml`, `cfg.py`):
CE 1, CRD 0.8, 128-d, K = 16384, T = 0.07, momentum 0.5. On CIFAR-100-LT (10,847 images)
K exceeds every class's pool of other-class examples: negatives are drawn with
replacement (the authors' code does the same whenever K exceeds the pool).

References:
  Tian, Krishnan, Isola, Contrastive Representation Distillation, ICLR 2020.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from krd_jax.losses import _common
from krd_jax.losses import contrastive
from krd_jax.methods import base


def _embed(params, features):
  return _common.l2_normalize(nn.Dense(params["kernel"].shape[-1]).apply(
      {"params": params}, features))


def build(counts, crd_weight, ce_weight, embed_dim, negatives, temperature, momentum,
          order, starts, class_counts):
  ce_fn = base.student_ce(counts, "ce")
  num_data = int(np.sum(counts))

  def init_params(rng, example):
    s_rng, t_rng = jax.random.split(rng)
    make = lambda r, f: nn.Dense(embed_dim).init(r, jnp.zeros((1, f.shape[-1])))["params"]
    return {"embed_s": make(s_rng, base.need(example, "student_features")),
            "embed_t": make(t_rng, base.need(example, "teacher_features"))}

  def init_state(rng, example):
    del example
    bound = 1.0 / np.sqrt(embed_dim / 3.0)  # the authors' uniform(-stdv, stdv)
    s_rng, t_rng = jax.random.split(rng)
    bank = lambda r: jax.random.uniform(r, (num_data, embed_dim), jnp.float32, -bound, bound)
    return {"memory_s": bank(s_rng), "memory_t": bank(t_rng),
            "z_s": -jnp.ones((), jnp.float32), "z_t": -jnp.ones((), jnp.float32)}

  def embeddings(out):
    params = base.need(out, "params")
    return (_embed(params["embed_s"], base.need(out, "student_features")),
            _embed(params["embed_t"], base.need(out, "teacher_features")))

  def scores(out):
    """(student scores, teacher scores) [B, K + 1] and their (possibly first) Z."""
    e_s, e_t = embeddings(out)
    index = base.need(out, "indices")
    negative = contrastive.other_class_indices(base.need(out, "rng"),
                                               base.need(out, "labels"), order, starts,
                                               class_counts, negatives)
    contrast = jnp.concatenate([index[:, None], negative], axis=1)
    state = base.need(out, "state")
    raw_s = contrastive.contrast_scores(e_s, state["memory_t"], contrast, temperature)
    raw_t = contrastive.contrast_scores(e_t, state["memory_s"], contrast, temperature)
    # Z is set once, from the first batch, as a constant (the authors' .item()).
    first = lambda z, raw: jnp.where(z < 0, jax.lax.stop_gradient(raw.mean()) * num_data, z)
    z_s, z_t = first(state["z_s"], raw_s), first(state["z_t"], raw_t)
    return raw_s / z_s, raw_t / z_t, z_s, z_t

  def fn(out, distill_scale):
    s, t, _, _ = scores(out)
    crd = jnp.mean(contrastive.contrast_loss(s, num_data) +
                   contrastive.contrast_loss(t, num_data))
    return base.total(ce_weight * ce_fn(out), {"crd": crd_weight * crd}, distill_scale)

  def next_state(out):
    e_s, e_t = embeddings(out)
    _, _, z_s, z_t = scores(out)
    state, index = out.state, out.indices
    return {"memory_s": contrastive.update_memory(state["memory_s"], index, e_s, momentum),
            "memory_t": contrastive.update_memory(state["memory_t"], index, e_t, momentum),
            "z_s": z_s, "z_t": z_t}

  return base.StudentObjective(fn, needs_teacher=True, init_params=init_params,
                               init_state=init_state, next_state=next_state,
                               reads_rng=True)


def constants(hparams, context):
  """The training labels sorted by class, for drawing other-class negatives."""
  del hparams
  if context.train_labels is None:
    raise ValueError("crd reads each example's index and label: it needs an in-memory "
                     "source (data.streaming=False)")
  order, starts, counts = contrastive.class_sorted_order(context.train_labels,
                                                         context.num_classes)
  return {"order": order, "starts": starts, "class_counts": counts}


METHOD = base.Method(
    name="crd", title="CRD",
    params={"crd_weight": base.weight(0.8, "weight of the contrastive term"),
            "ce_weight": base.weight(1.0, "weight of the student's CE term"),
            "embed_dim": base.Param(128, "embedding width", low=1),
            "negatives": base.Param(16384, "K, negatives per example (other classes)",
                                    low=1),
            "temperature": base.Param(0.07, "NCE temperature", low=0.0, low_open=True),
            "momentum": base.Param(0.5, "memory-bank momentum", low=0.0, high=1.0),
            "warmup_epochs": base.warmup(default=0)},  # mdistiller's CRD: no ramp
    build=build, uses_teacher=lambda hp: True, constants=constants,
    sample_indices=lambda hp: True)
