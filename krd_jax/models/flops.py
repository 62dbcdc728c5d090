"""FLOPs of a model counted from its architecture, not from a compiler's estimate.

XLA's cost analysis does not see inside cuDNN convolutions, so on a GPU it reports a
fraction of a step's work. This counts the multiply-adds of every convolution and dense
layer of the zoo (`layers.Conv`, `nn.Dense`, `layers.NormedLinear`) from the shapes a
forward pass traces (`jax.eval_shape`: nothing is computed), at 2 FLOPs each.
Normalisation, activations, pooling and the loss are left out: they are a few per
cent of a ResNet's work and run at memory speed, not at the matmul ceiling.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from krd_jax.models import layers


def forward_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
  """FLOPs (2 x multiply-adds) of one forward pass of `model` on one image.

  Args:
    model: a zoo model (`create_model`): apply(variables, x, train) -> (logits, features).
    input_shape: (H, W, C) of one image.

  Returns:
    The FLOPs of its convolutions and dense layers for one image.

  References:
    The convention of the CIFAR distillation literature's FLOP tables (one
    multiply-add = 2 FLOPs; mdistiller's and CRD's counts are multiply-adds).
  """
  total = 0

  def count(next_fun, args, kwargs, context):
    nonlocal total
    out = next_fun(*args, **kwargs)
    module, inputs = context.module, args[0] if args else None
    if context.method_name != "__call__" or inputs is None:
      return out
    if isinstance(module, layers.Conv):  # out [1, H', W', Cout]
      k = module.kernel_size
      total += 2 * math.prod(out.shape) * k * k * (inputs.shape[-1] // module.groups)
    elif isinstance(module, (nn.Dense, layers.NormedLinear)):
      total += 2 * math.prod(out.shape) * inputs.shape[-1]
    return out

  x = jnp.zeros((1, *input_shape), jnp.float32)
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
  with nn.intercept_methods(count):
    jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  return int(total)


def distillation_step_flops(teacher: nn.Module, student: nn.Module,
                            input_shape: tuple[int, ...]) -> int:
  """FLOPs per image of a distillation step: the teacher's forward pass, and the
  student's forward and backward passes (backward = 2 x forward: the gradients with
  respect to the inputs and to the weights each cost one forward's multiply-adds)."""
  return forward_flops(teacher, input_shape) + 3 * forward_flops(student, input_shape)
