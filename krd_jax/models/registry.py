"""Models by name: `create_model`, `model_names`, `feature_dim`, `input_shape`.

Every model is a Flax Linen module called as
`module.apply(variables, x, train=..., mutable=[...])` on NHWC float images, returning
`(logits [B, num_classes], features [B, feature_dim(name)])` in float32. BatchNorm
statistics live in the `batch_stats` collection (absent for "mlp"). Each accepts
`dtype` (computation dtype, e.g. `jnp.bfloat16`; parameters are always float32) and
`classifier` ("linear" or "cosine");
"mlp" also takes `width` and `depth`, "small_cnn" takes `width`.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax.numpy as jnp

from krd_jax.models.cifar_resnet import BasicBlock, CifarResNet
from krd_jax.models.imagenet_resnet import Bottleneck, ImageNetResNet
from krd_jax.models.mobilenetv2 import MobileNetV2
from krd_jax.models.shufflenetv2 import ShuffleNetV2
from krd_jax.models.small import MLP, SmallCNN
from krd_jax.models.wrn import WideResNet

_COMMON_OPTIONS: Mapping[str, Any] = {"dtype": jnp.float32, "classifier": "linear"}
CLASSIFIERS = ("linear", "cosine")
_CIFAR = (32, 32, 3)


@dataclasses.dataclass(frozen=True)
class _Spec:
  """How to build one named model.

  Attributes:
    build: (num_classes, dtype, **options) -> module.
    feature_dim: (**options) -> width of the returned features.
    input_shape: the (H, W, C) the model is meant for.
    options: model-specific keyword arguments and their defaults.
    stages: the stage maps the model sows (`layers.sow_stage`), for methods that read
      them (AT, ReviewKD, FitNet's hint).
  """
  build: Callable[..., nn.Module]
  feature_dim: Callable[..., int]
  input_shape: tuple[int, int, int] = _CIFAR
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  stages: tuple[str, ...] = ()


# CIFAR ResNets: each stage's output and its pre-ReLU sum.
_RESNET_STAGES = tuple(f"stage{k}{suffix}" for k in (1, 2, 3) for suffix in ("", "_preact"))


def _cifar_resnet(depth: int, filters: tuple[int, ...]) -> _Spec:
  return _Spec(lambda c, dtype: CifarResNet(depth, filters, c, dtype),
               lambda: filters[-1], stages=_RESNET_STAGES)


def _wrn(depth: int, k: int) -> _Spec:
  return _Spec(lambda c, dtype: WideResNet(depth, k, c, dtype), lambda: 64 * k)


_SPECS: dict[str, _Spec] = {
    **{f"resnet{d}": _cifar_resnet(d, (16, 16, 32, 64))
       for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": _cifar_resnet(8, (32, 64, 128, 256)),
    "resnet32x4": _cifar_resnet(32, (32, 64, 128, 256)),
    "wrn_16_2": _wrn(16, 2),
    "wrn_40_2": _wrn(40, 2),
    "mobilenetv2": _Spec(
        lambda c, dtype: MobileNetV2(c, expansion=6, width_mult=0.5, dtype=dtype),
        lambda: 1280),
    "shufflenetv2": _Spec(lambda c, dtype: ShuffleNetV2(c, dtype=dtype),
                          lambda: 1024),
    "resnet18": _Spec(
        lambda c, dtype: ImageNetResNet((2, 2, 2, 2), BasicBlock, c, dtype),
        lambda: 512, (224, 224, 3)),
    "resnet50": _Spec(
        lambda c, dtype: ImageNetResNet((3, 4, 6, 3), Bottleneck, c, dtype),
        lambda: 2048, (224, 224, 3)),
    "mlp": _Spec(
        lambda c, dtype, width, depth: MLP(c, width, depth, dtype),
        lambda width, depth: width, (8, 8, 1), {"width": 256, "depth": 1}),
    "small_cnn": _Spec(
        lambda c, dtype, width: SmallCNN(c, width, dtype),
        lambda width: 2 * width, (8, 8, 1), {"width": 32},
        stages=("stage1", "stage2", "stage3")),
}


def model_names() -> list[str]:
  """Every name `create_model` accepts, in registry order."""
  return list(_SPECS)


def _spec(name: str) -> _Spec:
  if name not in _SPECS:
    raise ValueError(f"unknown model {name!r}; choose one of {model_names()}")
  return _SPECS[name]


def _resolve(name: str, kwargs: Mapping[str, Any]) -> tuple[_Spec, dict[str, Any]]:
  """The spec and its options (defaults filled in); ValueError on unknown kwargs."""
  spec = _spec(name)
  allowed = {**_COMMON_OPTIONS, **spec.options}
  unknown = sorted(set(kwargs) - set(allowed))
  if unknown:
    raise ValueError(
        f"model {name!r} got unknown argument(s) {unknown}; allowed: {sorted(allowed)}")
  options = {**allowed, **kwargs}
  if options["classifier"] not in CLASSIFIERS:
    raise ValueError(f"model {name!r}: classifier must be one of {CLASSIFIERS}, got "
                     f"{options['classifier']!r}")
  for key in spec.options:
    options[key] = _positive_int(f"model {name!r}: {key}", options[key])
  return spec, options


def _positive_int(what: str, value: Any) -> int:
  """`value` as a Python int (NumPy integers accepted); ValueError unless >= 1."""
  try:
    if isinstance(value, bool):
      raise TypeError
    number = operator.index(value)
  except TypeError:
    number = 0
  if number < 1:
    raise ValueError(f"{what} must be a positive int, got {value!r}")
  return number


def create_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
  """Builds the named model.

  Args:
    name: one of `model_names()`.
    num_classes: number of logits.
    **kwargs: `dtype` (computation dtype, default float32), `classifier`
      ("linear", or "cosine": `layers.NormedLinear`, as LDAM-DRW uses) and the
      model's own options ("mlp": width=256, depth=1; "small_cnn": width=32).

  Returns:
    A Flax module; `module.apply(variables, x, train=...)` returns
    `(logits, features)` in float32.

  Raises:
    ValueError: unknown name or keyword, or a bad value.
  """
  spec, options = _resolve(name, kwargs)
  cosine = options.pop("classifier") == "cosine"
  model = spec.build(_positive_int("num_classes", num_classes), **options)
  return model.clone(cosine_classifier=cosine) if cosine else model


def feature_dim(name: str, **kwargs: Any) -> int:
  """Width of the features the named model returns, for the same `kwargs`."""
  spec, options = _resolve(name, kwargs)
  return spec.feature_dim(**{k: options[k] for k in spec.options})


def input_shape(name: str) -> tuple[int, int, int]:
  """The (H, W, C) input the named model is meant for (CIFAR 32x32x3, ImageNet
  224x224x3, digits 8x8x1); models with global pooling accept other sizes."""
  return _spec(name).input_shape


def stage_names(name: str) -> tuple[str, ...]:
  """The stage maps the named model offers (empty where it offers none: the MLP)."""
  return _spec(name).stages
