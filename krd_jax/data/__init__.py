"""Long-tailed data for krd_jax: profiles, groups, sources, loaders, augmentation.

Importing this package pulls in numpy and JAX only; TensorFlow is imported inside
the builders that decode (a cache miss in `load_dataset`, the streaming sources).

Typical use:

  ds = load_dataset("cifar10_lt", imbalance=100)          # 12406 training images
  loader = DatasetLoader(ds, 128, mesh, seed=0)
  for batch in loader.epoch(epoch):                       # sharded over `data`
    ...  # inside jit: augment(batch["image"], rng) -> normalize(..., ds.mean, ds.std)
"""

from krd_jax.data.augment import augment, normalize
from krd_jax.data.cache import default_cache_dir
from krd_jax.data.dataset import (
    LongTailDataset,
    channel_stats,
    describe,
    from_arrays,
)
from krd_jax.data.loader import (
    DatasetLoader,
    batches_from,
    epoch_permutation,
    eval_batches,
    start_global,
)
from krd_jax.data.profiles import (
    GROUPS,
    PROFILES,
    class_groups,
    long_tail_counts,
    long_tail_indices,
    validation_indices,
)
from krd_jax.data.image_folder import list_image_folder
from krd_jax.data.npz import load_arrays, save_arrays
from krd_jax.data.sources import DATASET_DEFAULTS, DATASET_NAMES, load_dataset
from krd_jax.data.streamed_sources import read_split_list

__all__ = [
    "DATASET_DEFAULTS", "DATASET_NAMES", "GROUPS", "PROFILES", "DatasetLoader",
    "LongTailDataset", "augment", "channel_stats", "class_groups", "default_cache_dir",
    "describe", "epoch_permutation", "eval_batches", "from_arrays", "list_image_folder",
    "load_arrays", "load_dataset", "long_tail_counts", "long_tail_indices", "normalize",
    "batches_from", "read_split_list", "start_global", "save_arrays", "validation_indices",
]
