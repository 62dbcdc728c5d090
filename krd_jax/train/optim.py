"""Optimisers and learning-rate schedules from a config, built from optax parts."""

from __future__ import annotations

import ml_collections
import optax

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")


def make_schedule(optim_cfg: ml_collections.ConfigDict, steps_per_epoch: int,
                  epochs: int) -> optax.Schedule:
  """Linear warm-up, then cosine decay to zero, step decay, or a constant rate.

  Args:
    optim_cfg: an `optim_config()` dict (lr, schedule, warmup_epochs, step_epochs, step_gamma).
    steps_per_epoch: optimiser steps per epoch.
    epochs: length of the run.

  Returns:
    An optax schedule: step -> learning rate.
  """
  if optim_cfg.schedule not in SCHEDULES:
    raise ValueError(f"optim.schedule={optim_cfg.schedule!r}; allowed: {', '.join(SCHEDULES)}")
  total = steps_per_epoch * epochs
  warmup = steps_per_epoch * optim_cfg.warmup_epochs
  if optim_cfg.schedule == "cosine":
    main = optax.cosine_decay_schedule(optim_cfg.lr, max(total - warmup, 1))
  elif optim_cfg.schedule == "step":
    main = optax.piecewise_constant_schedule(
        optim_cfg.lr, {steps_per_epoch * e - warmup: optim_cfg.step_gamma for e in optim_cfg.step_epochs})
  else:
    main = optax.constant_schedule(optim_cfg.lr)
  if warmup == 0:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, optim_cfg.lr, warmup), main], [warmup])


def make_optimizer(optim_cfg: ml_collections.ConfigDict, steps_per_epoch: int,
                   epochs: int) -> optax.GradientTransformation:
  """SGD with momentum and (coupled, PyTorch-style) weight decay, Adam or AdamW.

  Args:
    optim_cfg: an `optim_config()` dict.
    steps_per_epoch: optimiser steps per epoch.
    epochs: length of the run.

  Returns:
    An optax GradientTransformation.
  """
  if optim_cfg.name not in OPTIMIZERS:
    raise ValueError(f"optim.name={optim_cfg.name!r}; allowed: {', '.join(OPTIMIZERS)}")
  schedule = make_schedule(optim_cfg, steps_per_epoch, epochs)
  if optim_cfg.name == "adamw":
    return optax.adamw(schedule, weight_decay=optim_cfg.weight_decay)
  if optim_cfg.name == "adam":
    base = optax.adam(schedule)
  else:
    base = optax.sgd(schedule, momentum=optim_cfg.momentum or None, nesterov=optim_cfg.nesterov)
  if optim_cfg.weight_decay:
    # Coupled L2 as torch.optim.SGD(weight_decay=...): decay joins the gradient
    # before momentum, which is what the CIFAR KD recipes were tuned with.
    return optax.chain(optax.add_decayed_weights(optim_cfg.weight_decay), base)
  return base
