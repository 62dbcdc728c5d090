"""ImageNet-LT (Liu et al. 2019 split lists, 115.8k training images, 1000 classes).

  python -m krd_jax demo --config=imagenet_lt \
      --config.data.data_dir=/data/imagenet --config.data.split_list_dir=/data/ImageNet_LT

data_dir holds the ImageNet images the lists name ("train/n01440764/....JPEG 0");
split_list_dir holds ImageNet_LT_train.txt / _val.txt / _test.txt. Images stream
through tf.data (parallel decode, random-resized crop, flip, prefetch).
Arguments: `local` (2 epochs, small batches: checks the pipeline).
Expected runtime: 90 epochs ResNet-50 -> ResNet-18, about 1 day on 8 GPUs.
"""

from krd_jax.configs import common


def get_config(arg: str = ""):
  args = common.parse_args(arg, ("local",))
  cfg = common.large_config("imagenet_lt", weight_decay=5e-4)
  common.imagenet_baselines(cfg)
  return common.finish(cfg, args)
