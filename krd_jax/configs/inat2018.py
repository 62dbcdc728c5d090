"""iNaturalist 2018 (8,142 classes, 437.5k training images, long-tailed as it is).

  python -m krd_jax demo --config=inat2018 --config.data.data_dir=/data/tfds

Data: tfds i_naturalist2018 (manual download into the tfds data_dir, as tfds documents).
Streams through tf.data. Arguments: `local` (2 epochs, small batches).
Expected runtime: 90 epochs ResNet-50 -> ResNet-18, about 2 days on 8 GPUs.
"""

from krd_jax.configs import common


def get_config(arg: str = ""):
  args = common.parse_args(arg, ("local",))
  cfg = common.large_config("inat2018", weight_decay=1e-4)
  common.imagenet_baselines(cfg)  # mdistiller runs no iNat recipe: its ImageNet one
  return common.finish(cfg, args)
