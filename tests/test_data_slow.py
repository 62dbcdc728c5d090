"""Slow data tests on the real CIFAR-10 JPEG and CIFAR-100 PNG folders
(run with -m slow; the CIFAR-100 one reads $KRD_JAX_CIFAR100_DIR or
~/.cache/krd_jax/cifar100-png and is skipped without it).

The folder is taken from $KRD_JAX_CIFAR10_DIR, else ~/.cache/krd_jax/cifar10-jpg when
it holds train/ and test/, else extracted from the archive $KRD_JAX_CIFAR10_TARBALL
(cifar10-jpg.tar.gz) into a temporary folder. Skipped when none of these exists.
"""

from __future__ import annotations

import os
import pathlib
import tarfile

import numpy as np
import pytest

import krd_jax.data as kd

pytestmark = pytest.mark.slow

TARBALL = pathlib.Path(os.environ.get("KRD_JAX_CIFAR10_TARBALL", "cifar10-jpg.tar.gz"))
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


def _is_cifar_folder(path: pathlib.Path) -> bool:
  return (path / "train" / "airplane").is_dir() and (path / "test" / "truck").is_dir()


@pytest.fixture(scope="module")
def cifar10_folder(tmp_path_factory):
  for candidate in (os.environ.get("KRD_JAX_CIFAR10_DIR"),
                    os.path.expanduser("~/.cache/krd_jax/cifar10-jpg")):
    if candidate and _is_cifar_folder(pathlib.Path(candidate)):
      return pathlib.Path(candidate)
  if not TARBALL.exists():
    pytest.skip(f"no CIFAR-10 folder and no tarball at {TARBALL}")
  target = tmp_path_factory.mktemp("cifar10-jpg")
  with tarfile.open(TARBALL) as tar:
    tar.extractall(target, filter="data")
  assert _is_cifar_folder(target), f"unexpected layout in {TARBALL}"
  return target


def test_cifar10_folder_lt_if100(cifar10_folder, tmp_path):
  ds = kd.load_dataset("image_folder", data_dir=cifar10_folder, imbalance=100,
                       cache_dir=tmp_path)
  assert ds.class_names == CIFAR10_CLASSES
  assert ds.num_train == len(ds.train_labels) == 12406
  np.testing.assert_array_equal(ds.train_counts, kd.long_tail_counts(5000, 10, 100))
  assert ds.train_images.shape == (12406, 32, 32, 3) and ds.train_images.dtype == np.uint8
  assert len(ds.test_labels) == 10000
  np.testing.assert_array_equal(np.bincount(ds.test_labels), [1000] * 10)
  # Statistics of the long-tailed set (airplane-heavy, so bluer than CIFAR-10's
  # balanced 0.49 / 0.48 / 0.45).
  assert np.all((ds.mean > 0.4) & (ds.mean < 0.6)) and np.all((ds.std > 0.2) & (ds.std < 0.3))
  # A second load, with another seed, reuses the decoded folder.
  other = kd.load_dataset("image_folder", data_dir=cifar10_folder, imbalance=100, seed=1,
                          cache_dir=tmp_path)
  assert other.num_train == 12406
  assert not np.array_equal(other.train_images, ds.train_images)
  np.testing.assert_array_equal(other.test_images, ds.test_images)


def test_cifar10_folder_streams(cifar10_folder):
  ds = kd.load_dataset("image_folder", data_dir=cifar10_folder, streaming=True, image_size=32)
  assert ds.num_train == 50000
  batch = next(ds.train_stream(256, seed=0, epoch=0))
  assert batch["image"].shape == (256, 32, 32, 3) and batch["image"].dtype == np.uint8
  assert set(np.unique(batch["label"])) <= set(range(10))


@pytest.fixture(scope="module")
def cifar100_folder():
  folder = pathlib.Path(os.environ.get("KRD_JAX_CIFAR100_DIR")
                        or os.path.expanduser("~/.cache/krd_jax/cifar100-png"))
  if not ((folder / "train" / "apple").is_dir() and (folder / "test" / "worm").is_dir()):
    pytest.skip(f"no CIFAR-100 PNG folder at {folder} (extract "
                "the offline archive cifar100-png.tar.gz there)")
  return folder


def test_cifar100_offline_recipe_gives_the_ldam_drw_counts(cifar100_folder, tmp_path):
  """`--config=cifar100_lt:offline` on the lossless PNG folder: LDAM-DRW's IF = 100 counts
  (10,847 images, 500 down to 5) and 35 / 35 / 30 many / medium / few classes."""
  from krd_jax import configs, runs
  cfg = configs.get("cifar100_lt:offline").unlock()
  cfg.data.data_dir = str(cifar100_folder)
  cfg.data.cache_dir = str(tmp_path)
  ds = runs.load_data(cfg.lock())
  assert len(ds.train_labels) == 10847
  np.testing.assert_array_equal(ds.train_counts, kd.long_tail_counts(500, 100, 100))
  assert (ds.train_counts[0], ds.train_counts[-1]) == (500, 5)
  groups = ds.groups("absolute")
  assert [int((groups == g).sum()) for g in ("many", "medium", "few")] == [35, 35, 30]
  assert ds.class_names[0] == "apple" and ds.class_names[-1] == "worm"
  np.testing.assert_array_equal(np.bincount(ds.test_labels), [100] * 100)
