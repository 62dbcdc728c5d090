"""iNaturalist 2018 (8,142 classes, 437.5k training images, long-tailed as it is).

  python -m krd_jax demo --config=experiments/configs/inat2018.py --config.data.data_dir=/data/tfds

Data: tfds i_naturalist2018 (manual download into the tfds data_dir, as tfds documents).
Streams through tf.data. Arguments: `local` (2 epochs, small batches).
Expected runtime: 90 epochs ResNet-50 -> ResNet-18, about 2 days on 8 GPUs.
"""

from experiments.configs import common
from krd_jax.config import optim_config


def get_config(arg: str = ""):
  args = common.parse_args(arg, ("local",))
  cfg = common.cifar_config("inat2018", "resnet50", "resnet18", epochs=90)
  cfg.data.crop_pad = 0
  cfg.data.flip = False
  cfg.data.image_size = 224
  for role in (cfg.teacher, cfg.student):
    role.batch_size = 256
    role.optim = optim_config(name="sgd", lr=0.1, weight_decay=1e-4, schedule="cosine",
                              warmup_epochs=5)
  if "local" in args:
    common.local_mode(cfg)
  return cfg.lock()
