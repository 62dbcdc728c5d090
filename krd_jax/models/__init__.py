"""The krd_jax model zoo: Flax models that return (logits, features).

`features` are the pooled penultimate activations (after global average pooling,
before the classifier), which KRDistill's representation-rectified loss distils.
Build models by name with `create_model`; see `registry` for the names.
"""

from krd_jax.models.cifar_resnet import CifarResNet
from krd_jax.models.imagenet_resnet import ImageNetResNet
from krd_jax.models.mobilenetv2 import MobileNetV2
from krd_jax.models.registry import create_model, feature_dim, input_shape, model_names
from krd_jax.models.registry import stage_names
from krd_jax.models.shufflenetv2 import ShuffleNetV2
from krd_jax.models.small import MLP, SmallCNN
from krd_jax.models.wrn import WideResNet

__all__ = [
    "CifarResNet",
    "ImageNetResNet",
    "MLP",
    "MobileNetV2",
    "ShuffleNetV2",
    "SmallCNN",
    "WideResNet",
    "create_model",
    "feature_dim",
    "input_shape",
    "model_names",
    "stage_names",
]
