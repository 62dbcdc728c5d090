"""The train state pytree (everything a step changes, plus the frozen teacher), and the
models and variables it starts from."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from krd_jax import models


# The fields that belong to one student (a member of a cohort, a seed of a group): the
# solo step, the cohort (keyed by member) and the vmapped seeds (stacked) all thread
# exactly these, so a field added here reaches all three.
MEMBER_FIELDS = ("params", "batch_stats", "opt_state", "method_state")


@flax.struct.dataclass
class TrainState:
  """State of one training run.

  Attributes:
    step: optimiser steps taken (int32 scalar).
    params: trainable parameters, `{"model": ..., "method": ...}` ("method": what
      the student's method trains of its own, only where it owns something).
    batch_stats: BatchNorm running statistics of the model (empty for models without BN).
    opt_state: optax state.
    teacher: the teacher's `{"params", "batch_stats"}` for a student run, None for a
      teacher run. Applied in inference mode and never differentiated; not saved in
      student checkpoints (the teacher is saved once, in its own run).
    method_state: what the student's method keeps between steps without training it
      (CRD's memory banks); None where it keeps nothing. Checkpointed, never seen by
      the optimiser.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: optax.OptState
  teacher: Any = None
  method_state: Any = None

  def trainable(self) -> dict:
    """The part a checkpoint stores (method_state only where the method keeps some, so
    checkpoints of methods without state keep the tree they always had)."""
    out = {"step": self.step, "params": self.params, "batch_stats": self.batch_stats,
           "opt_state": self.opt_state}
    if jax.tree_util.tree_leaves(self.method_state):
      out["method_state"] = self.method_state
    return out

  def member_fields(self) -> dict:
    """The student's own fields (`MEMBER_FIELDS`) by name."""
    return {name: getattr(self, name) for name in MEMBER_FIELDS}

  def model_variables(self) -> dict:
    """Variables for `model.apply` in inference mode."""
    return {"params": self.params["model"], "batch_stats": self.batch_stats}


def create_state(params: Any, batch_stats: Any, tx: optax.GradientTransformation,
                 teacher: Any = None, method_state: Any = None) -> TrainState:
  """A fresh state at step 0."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=tx.init(params), teacher=teacher, method_state=method_state)


def compute_dtype(name: str) -> jnp.dtype:
  """The run's compute dtype from `config.compute_dtype` (parameters stay float32)."""
  if name not in ("float32", "bfloat16"):
    raise ValueError(f"compute_dtype={name!r}; allowed: float32, bfloat16")
  return jnp.dtype(name)


def build_model(role_cfg: ml_collections.ConfigDict, num_classes: int,
                dtype: jnp.dtype) -> nn.Module:
  """The Flax module of a role config (`cfg.teacher` or `cfg.student`)."""
  return models.create_model(role_cfg.model, num_classes, dtype=dtype,
                             **role_cfg.model_kwargs.to_dict())


def init_variables(model: nn.Module, image_shape, rng: jax.Array) -> dict:
  """Model variables as `{"params", "batch_stats"}` (batch_stats empty without BN)."""
  dummy = jnp.zeros((1, *image_shape), jnp.float32)
  variables = model.init(rng, dummy, train=False)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
