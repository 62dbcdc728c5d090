"""PyTorch eager definitions of the CIFAR ResNets, for benchmarks and cross-checks.

resnet8, resnet14, resnet32, resnet8x4 and resnet32x4 with the architecture of CRD /
mdistiller's `resnet.py`, layer for layer the same as `krd_jax.models.CifarResNet`
(3x3 stem, three stages of basic blocks with strides 1, 2, 2, 1x1-conv + BN
projection shortcuts where the shape changes, global average pooling, linear
classifier; kaiming-normal fan-out convolutions, BN weight 1 bias 0). Inputs are
NCHW here. `forward` returns (logits, pooled features) like the Flax models.

PyTorch is a benchmark-only dependency (not in requirements):
  pip install torch
  python benchmarks/torch_reference.py    # prints the parameter counts

References:
  He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.
  Tian, Krishnan, Isola. Contrastive Representation Distillation. ICLR 2020.
  Zhao, Cui, Song, Qiu, Liang. Decoupled Knowledge Distillation. CVPR 2022.
"""

from __future__ import annotations

import torch
from torch import nn

# name -> (depth, (stem, stage1, stage2, stage3) widths)
CONFIGS: dict[str, tuple[int, tuple[int, int, int, int]]] = {
    "resnet8": (8, (16, 16, 32, 64)),
    "resnet14": (14, (16, 16, 32, 64)),
    "resnet32": (32, (16, 16, 32, 64)),
    "resnet8x4": (8, (32, 64, 128, 256)),
    "resnet32x4": (32, (32, 64, 128, 256)),
}


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
  return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
          nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
  """conv3x3-BN-ReLU-conv3x3-BN plus (projected) shortcut, then ReLU."""

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.body = nn.Sequential(*_conv_bn(cin, cout, 3, stride), nn.ReLU(inplace=True),
                              *_conv_bn(cout, cout, 3))
    self.shortcut = (nn.Sequential(*_conv_bn(cin, cout, 1, stride))
                     if stride != 1 or cin != cout else nn.Identity())

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return torch.relu(self.body(x) + self.shortcut(x))


class CifarResNet(nn.Module):
  """CIFAR ResNet of depth 6n + 2 with the given stem / stage widths."""

  def __init__(self, depth: int, filters: tuple[int, int, int, int], num_classes: int):
    super().__init__()
    n = (depth - 2) // 6
    layers: list[nn.Module] = [*_conv_bn(3, filters[0], 3), nn.ReLU(inplace=True)]
    cin = filters[0]
    for width, stride in zip(filters[1:], (1, 2, 2)):
      for i in range(n):
        layers.append(BasicBlock(cin, width, stride if i == 0 else 1))
        cin = width
    self.features = nn.Sequential(*layers)
    self.fc = nn.Linear(cin, num_classes)
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
      elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)

  def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    feats = self.features(x).mean(dim=(2, 3))
    return self.fc(feats), feats


def create(name: str, num_classes: int = 100) -> CifarResNet:
  """Builds the named PyTorch model."""
  if name not in CONFIGS:
    raise ValueError(f"unknown model {name!r}; choose one of {sorted(CONFIGS)}")
  depth, filters = CONFIGS[name]
  return CifarResNet(depth, filters, num_classes)


def param_count(name: str, num_classes: int = 100) -> int:
  """Trainable parameters (BN running statistics excluded)."""
  return sum(p.numel() for p in create(name, num_classes).parameters())


if __name__ == "__main__":
  for model_name in CONFIGS:
    print(f"{model_name:12s} {param_count(model_name, 100):>10,d}  (100 classes)")
