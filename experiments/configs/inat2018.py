"""iNaturalist 2018 (8,142 classes, 437.5k training images, long-tailed as it is).

  python -m krd_jax demo --config=experiments/configs/inat2018.py --config.data.data_dir=/data/tfds

Data: tfds i_naturalist2018 (manual download into the tfds data_dir, as tfds documents).
Streams through tf.data. Arguments: `local` (2 epochs, small batches).
Expected runtime: 90 epochs ResNet-50 -> ResNet-18, about 2 days on 8 GPUs.
"""

from experiments.configs import common


def get_config(arg: str = ""):
  args = common.parse_args(arg, ("local",))
  cfg = common.large_config("inat2018", weight_decay=1e-4)
  common.imagenet_baselines(cfg)  # mdistiller runs no iNat recipe: its ImageNet one
  if "local" in args:
    common.local_mode(cfg)
  return cfg.lock()
