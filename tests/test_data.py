"""Tests of krd_jax.data: profiles, groups, sources (offline), cache, loaders, augmentation."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from krd_jax import sharding
from krd_jax.data import cache as cache_lib
from krd_jax.data import loader as loader_lib
from krd_jax.data import sources
import krd_jax.data as kd

REPO = pathlib.Path(__file__).resolve().parents[1]

CIFAR10_LT_SIZES = {10: 20431, 50: 13996, 100: 12406, 200: 11203}
CIFAR100_LT_SIZES = {10: 19573, 50: 12608, 100: 10847, 200: 9502}


# --------------------------------------------------------------------------- profiles


@pytest.mark.parametrize("imbalance,size", CIFAR10_LT_SIZES.items())
def test_cifar10_lt_sizes_pure(imbalance, size):
  counts = kd.long_tail_counts(5000, 10, imbalance)
  assert counts.dtype == np.int64
  assert counts.sum() == size
  assert counts[0] == 5000 and counts[-1] == 5000 // imbalance
  assert np.all(np.diff(counts) <= 0)


@pytest.mark.parametrize("imbalance,size", CIFAR100_LT_SIZES.items())
def test_cifar100_lt_sizes_pure(imbalance, size):
  assert kd.long_tail_counts(500, 100, imbalance).sum() == size


def test_cifar100_lt_if100_groups_35_35_30():
  groups = kd.class_groups(kd.long_tail_counts(500, 100, 100))
  assert [int((groups == g).sum()) for g in kd.GROUPS["absolute"]] == [35, 35, 30]


def test_step_profile():
  np.testing.assert_array_equal(kd.long_tail_counts(500, 4, 10, "step"), [500, 500, 50, 50])
  # Odd C: the extra class goes to the tail.
  np.testing.assert_array_equal(kd.long_tail_counts(100, 5, 100, "step"), [100, 100, 1, 1, 1])


def test_imbalance_one_is_balanced():
  np.testing.assert_array_equal(kd.long_tail_counts(7, 3, 1.0), [7, 7, 7])


@pytest.mark.parametrize("imbalance", [0.5, 0.0, -3, float("nan"), float("inf"), "x"])
def test_bad_imbalance(imbalance):
  with pytest.raises(ValueError, match="imbalance"):
    kd.long_tail_counts(100, 10, imbalance)


def test_bad_profile():
  with pytest.raises(ValueError, match="profile"):
    kd.long_tail_counts(100, 10, 10, profile="linear")


def test_absolute_groups_thresholds():
  groups = kd.class_groups([101, 100, 50, 20, 19, 1])
  assert groups.tolist() == ["many", "medium", "medium", "medium", "few", "few"]


def test_tercile_groups_sizes_and_ties():
  counts = kd.long_tail_counts(100, 10, 50)
  groups = kd.class_groups(counts, "tercile")
  assert groups.tolist() == ["head"] * 4 + ["middle"] * 3 + ["tail"] * 3
  assert [int((kd.class_groups(np.arange(11, 0, -1), "tercile") == g).sum())
          for g in kd.GROUPS["tercile"]] == [4, 4, 3]
  # Ties are broken by class index, lower index ranked as more frequent.
  assert kd.class_groups([5, 5, 5], "tercile").tolist() == ["head", "middle", "tail"]
  # Ranking is by count, not by position.
  assert kd.class_groups([1, 9, 5], "tercile").tolist() == ["tail", "head", "middle"]
  with pytest.raises(ValueError, match="split"):
    kd.class_groups(counts, "quartile")


def _balanced_labels(num_classes, per_class):
  return np.repeat(np.arange(num_classes), per_class)[np.random.default_rng(9).permutation(
      num_classes * per_class)]


def test_long_tail_indices_deterministic_per_seed():
  labels = _balanced_labels(10, 200)
  counts = kd.long_tail_counts(200, 10, 20)
  a = kd.long_tail_indices(labels, counts, seed=0)
  b = kd.long_tail_indices(labels, counts, seed=0)
  c = kd.long_tail_indices(labels, counts, seed=1)
  np.testing.assert_array_equal(a, b)
  assert a.dtype == np.int64 and np.all(np.diff(a) > 0)
  assert not np.array_equal(a, c)
  for idx in (a, c):
    np.testing.assert_array_equal(np.bincount(labels[idx], minlength=10), counts)


def test_long_tail_indices_errors():
  labels = _balanced_labels(3, 5)
  with pytest.raises(ValueError, match="class 0 has 5"):
    kd.long_tail_indices(labels, [6, 1, 1], 0)
  with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
    kd.long_tail_indices(labels, [1, 1], 0)
  with pytest.raises(ValueError, match="seed"):
    kd.long_tail_indices(labels, [1, 1, 1], -1)


def test_validation_indices_disjoint_and_balanced():
  labels = _balanced_labels(4, 50)
  counts = kd.long_tail_counts(40, 4, 10)
  train = kd.long_tail_indices(labels, counts, 3)
  val = kd.validation_indices(labels, counts, 10, 3)
  assert not set(train) & set(val)
  np.testing.assert_array_equal(np.bincount(labels[val]), [10] * 4)
  assert kd.validation_indices(labels, counts, 11, 3) is None  # Class 0 keeps 40 of 50.
  assert len(kd.validation_indices(labels, counts, 0, 3)) == 0


# --------------------------------------------------------------------- tfds cifar mock


def _mock_cifar_as_dataset(calls):
  """tfds `_as_dataset` replacement: balanced CIFAR-shaped splits, label in pixel 0."""
  import tensorflow as tf

  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    del decoders, read_config, shuffle_files
    split = str(split)
    calls.append((self.name, split))
    num_classes = self.info.features["label"].num_classes
    per_class = {"train": 50000, "test": 2000}[split] // num_classes
    n = per_class * num_classes
    # Examples in reverse id order: the loader must sort them by id.
    labels = (np.arange(n) % num_classes)[::-1].astype(np.int64)
    ids = np.char.add(f"{split}_", np.char.zfill(np.arange(n)[::-1].astype(str), 5))
    images = np.zeros((n, 32, 32, 3), np.uint8)
    images[:, 0, 0, 0] = labels
    return tf.data.Dataset.from_tensor_slices({"id": ids, "image": images, "label": labels})

  return as_dataset


@pytest.mark.parametrize("name,sizes", [("cifar10_lt", CIFAR10_LT_SIZES),
                                        ("cifar100_lt", CIFAR100_LT_SIZES)])
def test_cifar_lt_through_tfds(name, sizes, tmp_path):
  import tensorflow_datasets as tfds
  calls = []
  with tfds.testing.mock_data(as_dataset_fn=_mock_cifar_as_dataset(calls)):
    for imbalance, size in sizes.items():
      ds = kd.load_dataset(name, imbalance=imbalance, cache_dir=tmp_path)
      assert ds.num_train == len(ds.train_labels) == size, imbalance
      np.testing.assert_array_equal(ds.train_images[:, 0, 0, 0], ds.train_labels)
      assert len(ds.test_labels) == 2000  # The balanced test split is kept whole.
      assert ds.test_images.shape[1:] == (32, 32, 3)
      if name == "cifar100_lt" and imbalance == 100:
        groups = ds.groups("absolute")
        assert [int((groups == g).sum()) for g in ("many", "medium", "few")] == [35, 35, 30]
  # tfds decoded each split once; the other IFs came from the decoded-source cache.
  assert sorted(calls) == sorted({(sources.DATASET_DEFAULTS[name]["tfds_name"], s)
                                  for s in ("train", "test")})
  if name == "cifar10_lt":
    assert ds.class_names[0] == "airplane" and ds.class_names[-1] == "truck"


# ------------------------------------------------------------------------ image folder


def _write_png(path, array):
  from PIL import Image
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


def _make_folder(root, per_class, shape=(6, 7, 3), classes=("cat", "dog", "emu")):
  for split, n in per_class.items():
    for label, name in enumerate(classes):
      for i in range(n):
        image = np.full(shape, 10 * label + i, np.uint8)
        _write_png(root / split / name / f"{i:03d}.png", image)
  return root


def test_image_folder_small_tree(tmp_path):
  root = _make_folder(tmp_path / "folder", {"train": 6, "test": 2})
  ds = kd.load_dataset("image_folder", data_dir=root, imbalance=3, seed=1,
                       cache_dir=tmp_path / "cache")
  assert ds.class_names == ["cat", "dog", "emu"]
  np.testing.assert_array_equal(ds.train_counts, [6, 3, 2])  # n_max = 6, IF = 3.
  assert ds.train_images.shape == (11, 6, 7, 3) and ds.train_images.dtype == np.uint8
  assert ds.train_labels.dtype == np.int32
  np.testing.assert_array_equal(ds.train_images[:, 0, 0, 0] // 10, ds.train_labels)
  np.testing.assert_array_equal(np.sort(ds.test_images[:, 0, 0, 0]), [0, 1, 10, 11, 20, 21])
  assert ds.image_shape == (6, 7, 3)
  assert ds.info["source"] == "image_folder"


def test_image_folder_streaming(tmp_path):
  root = _make_folder(tmp_path / "folder", {"train": 4, "test": 1})
  ds = kd.load_dataset("image_folder", data_dir=root, streaming=True, image_size=8)
  assert ds.streaming and ds.train_images is None
  np.testing.assert_array_equal(ds.train_counts, [4, 4, 4])
  batches = list(ds.train_stream(4, seed=0, epoch=0))
  assert len(batches) == 3
  assert batches[0]["image"].shape == (4, 8, 8, 3) and batches[0]["image"].dtype == np.uint8
  resumed = list(ds.train_stream(4, seed=0, epoch=0, start_step=1))
  np.testing.assert_array_equal(resumed[0]["image"], batches[1]["image"])
  (test,) = list(ds.test_stream(4))
  assert test["mask"].tolist() == [True, True, True, False]


def test_image_folder_errors(tmp_path):
  with pytest.raises(ValueError, match="data_dir"):
    kd.load_dataset("image_folder")
  with pytest.raises(ValueError, match="does not exist"):
    kd.load_dataset("image_folder", data_dir=tmp_path / "nowhere")
  root = _make_folder(tmp_path / "no_test", {"train": 2})
  with pytest.raises(ValueError, match="no test split"):
    kd.load_dataset("image_folder", data_dir=root)
  root = _make_folder(tmp_path / "mixed", {"train": 2, "test": 1})
  _write_png(root / "train" / "cat" / "big.png", np.zeros((9, 9, 3), np.uint8))
  with pytest.raises(ValueError, match="different sizes"):
    kd.load_dataset("image_folder", data_dir=root, imbalance=1, cache_dir=tmp_path / "c")


# -------------------------------------------------------------------------- split lists


def _tiny_png_bytes():
  import io
  from PIL import Image
  buf = io.BytesIO()
  Image.fromarray(np.full((5, 6, 3), 128, np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


def _make_places_tree(root, train_per_class=(2, 1)):
  """365 classes, the first with 2 training images and the rest with 1, two test images."""
  png = _tiny_png_bytes()
  train, test = [], []
  for c in range(365):
    for i in range(train_per_class[0] if c == 0 else train_per_class[1]):
      rel = f"data/c{c:03d}/{i}.png"
      train.append(f"{rel} {c}")
      (root / rel).parent.mkdir(parents=True, exist_ok=True)
      (root / rel).write_bytes(png)
  for c in (0, 364):
    rel = f"val/c{c:03d}/t.png"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(png)
    test.append(f"{rel} {c}")
  (root / "Places_LT_train.txt").write_text("\n".join(train) + "\n")
  (root / "Places_LT_test.txt").write_text("\n".join(test) + "\n")
  return root


def test_split_lists_stream(tmp_path):
  root = _make_places_tree(tmp_path / "places")
  ds = kd.load_dataset("places_lt", data_dir=root, image_size=16)
  assert ds.streaming and ds.num_classes == 365 and ds.num_train == 366
  assert ds.train_counts[0] == 2 and ds.class_names[1] == "c001"
  assert ds.groups().tolist().count("few") == 365
  first = next(ds.train_stream(32, seed=3, epoch=0))
  again = next(ds.train_stream(32, seed=3, epoch=0))
  assert first["image"].shape == (32, 16, 16, 3) and first["label"].dtype == np.int32
  np.testing.assert_array_equal(first["label"], again["label"])
  np.testing.assert_array_equal(first["image"], again["image"])
  assert len(list(ds.train_stream(32, seed=3, epoch=0))) == 366 // 32
  (test,) = list(ds.test_stream(4))
  assert test["mask"].tolist() == [True, True, False, False]
  assert test["label"][:2].tolist() == [0, 364]


def _rewrite_list(root, line):
  (root / "Places_LT_train.txt").write_text(
      (root / "Places_LT_train.txt").read_text() + line + "\n")


@pytest.mark.parametrize("line,message", [
    ("data/c000/missing.png 0", "do not exist"),
    ("../outside.png 0", "climbs out"),
    ("/etc/hostname 0", "absolute path"),
    ("data/c000/0.png 365", r"outside \[0, 365\)"),
    ("data/c000/0.png zero", "not an integer"),
    ("link.png 0", "outside the root"),
])
def test_split_list_refuses(tmp_path, line, message):
  root = _make_places_tree(tmp_path / "places")
  (tmp_path / "outside.png").write_bytes(_tiny_png_bytes())
  os.symlink(tmp_path / "outside.png", root / "link.png")
  _rewrite_list(root, line)
  with pytest.raises(ValueError, match=message):
    kd.load_dataset("places_lt", data_dir=root, cache_dir=tmp_path / "cache")


def test_split_list_missing_list(tmp_path):
  with pytest.raises(ValueError, match="ImageNet_LT_train.txt does not exist"):
    kd.load_dataset("imagenet_lt", data_dir=tmp_path)


# --------------------------------------------------------------------------- inat mock


def test_inat2018_streams_under_mock(tmp_path):
  import tensorflow as tf
  import tensorflow_datasets as tfds
  png = tf.io.encode_png(np.full((10, 12, 3), 7, np.uint8)).numpy()

  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    del read_config, shuffle_files
    num_classes = self.info.features["label"].num_classes
    n = num_classes if str(split) == "train" else 6
    labels = np.arange(n, dtype=np.int64) % num_classes
    ds = tf.data.Dataset.from_tensor_slices({"image": np.full(n, png), "label": labels})
    if decoders and "image" in decoders:  # SkipDecoding: images stay encoded bytes.
      return ds
    return ds.map(lambda ex: {**ex, "image": tf.io.decode_png(ex["image"], channels=3)})

  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    ds = kd.load_dataset("inat2018", cache_dir=tmp_path, image_size=16)
    assert ds.num_classes == 8142 and ds.streaming
    np.testing.assert_array_equal(ds.train_counts, np.ones(8142))
    batch = next(ds.train_stream(8, seed=0, epoch=0))
    assert batch["image"].shape == (8, 16, 16, 3) and batch["label"].shape == (8,)
    test = list(ds.test_stream(4))
    assert [int(b["mask"].sum()) for b in test] == [4, 2]
    _assert_rows_partition(ds, train_batch=8, eval_batch=4)


# ----------------------------------------------------------------------------- augment


# Compiled once per static configuration: eager vmap compiles op by op, which is slow.
_augment = jax.jit(kd.augment, static_argnames=("pad", "flip"))


def _window_and_flip(out, image, pad):
  """(dy, dx, flipped) such that `out` is that crop of the padded image, else None."""
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
  h, w = image.shape[:2]
  for flipped in (False, True):
    view = out[:, ::-1] if flipped else out
    for dy in range(2 * pad + 1):
      for dx in range(2 * pad + 1):
        if np.array_equal(padded[dy:dy + h, dx:dx + w], view):
          return dy, dx, flipped
  return None


def test_augment_crops_and_flips_vary_and_repeat_per_key():
  image = np.random.default_rng(1).integers(1, 256, (6, 6, 1), np.uint8)
  images = jnp.asarray(np.broadcast_to(image, (32, 6, 6, 1)))
  per_step = []
  for step in range(2):
    out = _augment(images, jax.random.key(step), pad=2, flip=True)
    assert out.shape == images.shape and out.dtype == jnp.uint8
    np.testing.assert_array_equal(out, _augment(images, jax.random.key(step), pad=2, flip=True))
    views = [_window_and_flip(o, image, 2) for o in np.asarray(out)]
    assert None not in views  # Every output is a (mirrored) window of the padded image.
    assert len({v[:2] for v in views}) > 3  # Crops differ across examples,
    assert {v[2] for v in views} == {False, True}  # and so do flips.
    per_step.append(views)
  assert per_step[0] != per_step[1]  # And across steps.


def test_augment_no_flip_no_pad_is_identity():
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (32, 6, 6, 1), np.uint8))
  np.testing.assert_array_equal(_augment(images, jax.random.key(0), pad=0, flip=False), images)


def test_augment_on_sharded_batch_matches_unsharded():
  mesh = sharding.make_mesh()
  images = np.random.default_rng(2).integers(0, 256, (32, 6, 6, 1), np.uint8)
  key = jax.random.key(5)
  sharded = _augment(sharding.shard_batch(images, mesh), key, pad=2, flip=True)
  np.testing.assert_array_equal(sharded, _augment(jnp.asarray(images), key, pad=2, flip=True))


def test_normalize():
  images = jnp.full((2, 1, 1, 3), 255, jnp.uint8)
  out = kd.normalize(images, [0.5, 0.5, 0.0], [0.5, 0.25, 1.0])
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out[0, 0, 0], [1.0, 2.0, 1.0])


# ------------------------------------------------------------------ digits and caching


@pytest.fixture(scope="module")
def digits_cache(tmp_path_factory):
  """A cache dir in which digits_lt (IF=50) was built from nothing, with sockets refused."""
  cache_dir = tmp_path_factory.mktemp("krd_cache")

  def no_network(*args, **kwargs):
    raise OSError("network disabled in tests")

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(socket.socket, "connect", no_network)
    ds = kd.load_dataset("digits_lt", imbalance=50, val_per_class=10, cache_dir=cache_dir)
  return cache_dir, ds


def test_digits_lt_builds_offline(digits_cache):
  cache_dir, ds = digits_cache
  assert (cache_dir / "tfds" / "krd_digits" / "1.0.0" / "dataset_info.json").exists()
  np.testing.assert_array_equal(ds.train_counts, [100, 64, 41, 27, 17, 11, 7, 4, 3, 2])
  assert ds.train_images.shape == (276, 8, 8, 1) and ds.train_images.dtype == np.uint8
  np.testing.assert_array_equal(np.bincount(ds.test_labels), [30] * 10)
  np.testing.assert_array_equal(np.bincount(ds.val_labels), [10] * 10)
  assert ds.train_images.max() == 255
  assert ds.mean.shape == (1,) and 0 < ds.mean[0] < 1
  # Train, validation and test images are distinct examples of the same digits.
  train = {x.tobytes() for x in ds.train_images}
  assert not train & {x.tobytes() for x in ds.test_images}
  assert not train & {x.tobytes() for x in ds.val_images}


def test_digits_second_load_hits_cache(digits_cache, monkeypatch):
  cache_dir, first = digits_cache

  def no_decoding(self):
    raise AssertionError("cache miss: the source was decoded again")

  monkeypatch.setattr(sources._DigitsSource, "load", no_decoding)
  ds = kd.load_dataset("digits_lt", imbalance=50, val_per_class=10, cache_dir=cache_dir)
  np.testing.assert_array_equal(ds.train_images, first.train_images)
  np.testing.assert_array_equal(ds.val_labels, first.val_labels)
  # Another IF reuses the decoded source: still no decoding.
  assert kd.load_dataset("digits_lt", imbalance=10, cache_dir=cache_dir).num_train > 276


def test_cache_hit_imports_no_tensorflow(digits_cache, tmp_path):
  cache_dir, ds = digits_cache
  kd.save_arrays(ds, tmp_path / "digits.npz")
  script = textwrap.dedent(f"""
      import sys
      import krd_jax.data as kd
      ds = kd.load_dataset("digits_lt", imbalance=50, val_per_class=10,
                           cache_dir={str(cache_dir)!r})
      saved = kd.load_arrays({str(tmp_path / "digits.npz")!r})
      assert ds.num_train == saved.num_train == 276
      assert "tensorflow" not in sys.modules, "TensorFlow was imported"
      """)
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]


def test_corrupted_cache_is_rebuilt(digits_cache, tmp_path):
  cache_dir, first = digits_cache
  path = pathlib.Path(first.info["cache_file"])
  # A copy of the cache, so the module fixture stays intact for other tests.
  import shutil
  copy = tmp_path / "cache"
  shutil.copytree(cache_dir, copy)
  copied = copy / path.relative_to(cache_dir)
  copied.write_bytes(copied.read_bytes()[:1000])  # Truncated.
  for source_file in (copy / "sources").glob("*.npz"):
    source_file.write_bytes(b"garbage")  # The decoded source too: rebuilt from tfds.
  ds = kd.load_dataset("digits_lt", imbalance=50, val_per_class=10, cache_dir=copy)
  np.testing.assert_array_equal(ds.train_images, first.train_images)
  assert copied.stat().st_size > 1000
  key = cache_lib.cache_key({"x": 1})
  assert cache_lib.read(copied, key) is None  # Another key: a miss, not a wrong hit.


def test_bad_profile_raises_before_caching(tmp_path):
  with pytest.raises(ValueError, match=r"class\(es\) \[8, 9\] with zero images"):
    kd.load_dataset("digits_lt", imbalance=200, cache_dir=tmp_path / "c")
  with pytest.raises(ValueError, match="lower n_max"):
    kd.load_dataset("digits_lt", imbalance=10, n_max=150, cache_dir=tmp_path / "c")
  assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("kwargs,message", [
    (dict(name="mnist_lt"), "unknown dataset"),
    (dict(name="digits_lt", imbalance=0.9), "imbalance"),
    (dict(name="digits_lt", profile="linear"), "profile"),
    (dict(name="digits_lt", seed=-1), "seed"),
    (dict(name="digits_lt", val_per_class=-2), "val_per_class"),
    (dict(name="cifar10_lt", streaming=True), "streaming"),
])
def test_load_dataset_bad_arguments(kwargs, message, tmp_path):
  with pytest.raises(ValueError, match=message):
    kd.load_dataset(**kwargs, cache_dir=tmp_path)
  assert not any(tmp_path.iterdir())


def test_val_split_impossible_warns_and_is_empty(digits_cache):
  cache_dir, _ = digits_cache
  with pytest.warns(UserWarning, match="validation split is empty"):
    ds = kd.load_dataset("digits_lt", imbalance=50, val_per_class=50, cache_dir=cache_dir)
  assert ds.val_images.shape == (0, 8, 8, 1) and ds.val_labels.shape == (0,)


# --------------------------------------------------------------- arrays in, arrays out


def _toy_arrays(n_per_class=20, num_classes=4):
  labels = _balanced_labels(num_classes, n_per_class)
  images = np.zeros((len(labels), 4, 4, 3), np.uint8)
  images[:, 0, 0, 0] = labels
  return images, labels


def test_from_arrays_and_roundtrip(tmp_path):
  images, labels = _toy_arrays()
  ds = kd.from_arrays("toy", images, labels, images[:8], labels[:8], imbalance=10,
                      val_per_class=2, n_max=18, class_names=["a", "b", "c", "d"])
  np.testing.assert_array_equal(ds.train_counts, kd.long_tail_counts(18, 4, 10))
  np.testing.assert_array_equal(np.bincount(ds.val_labels), [2, 2, 2, 2])
  np.testing.assert_array_equal(ds.train_images[:, 0, 0, 0], ds.train_labels)
  kd.save_arrays(ds, tmp_path / "toy.data")
  back = kd.load_arrays(tmp_path / "toy.data")
  assert back.class_names == ["a", "b", "c", "d"] and back.info == ds.info
  for field in ("train_images", "train_labels", "test_images", "val_labels", "mean"):
    np.testing.assert_array_equal(getattr(back, field), getattr(ds, field))
  as_given = kd.from_arrays("toy", images, labels, images, labels)
  assert as_given.num_train == len(labels) and as_given.num_classes == 4
  # Compressed: the same dataset back, in a smaller file (the toy images are zeros but
  # for one pixel, so deflate must shrink them).
  kd.save_arrays(ds, tmp_path / "toy.npz", compressed=True)
  packed = kd.load_arrays(tmp_path / "toy.npz")
  for field in ("train_images", "train_labels", "test_images", "val_labels", "mean"):
    np.testing.assert_array_equal(getattr(packed, field), getattr(ds, field))
  assert (tmp_path / "toy.npz").stat().st_size < (tmp_path / "toy.data").stat().st_size


def test_from_arrays_bad_inputs(tmp_path):
  images, labels = _toy_arrays()
  with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
    kd.from_arrays("toy", images, labels, images, labels, class_names=["a", "b", "c"])
  with pytest.raises(ValueError, match="uint8"):
    kd.from_arrays("toy", images.astype(np.float32), labels, images, labels)
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  with pytest.raises(ValueError, match="cannot read"):
    kd.load_arrays(tmp_path / "junk.npz")


# ------------------------------------------------------------------------------ loader


def test_epoch_permutation_deterministic():
  a = kd.epoch_permutation(100, seed=1, epoch=2)
  np.testing.assert_array_equal(a, kd.epoch_permutation(100, seed=1, epoch=2))
  np.testing.assert_array_equal(np.sort(a), np.arange(100))
  assert a.dtype == np.int64
  assert not np.array_equal(a, kd.epoch_permutation(100, seed=1, epoch=3))
  assert not np.array_equal(a, kd.epoch_permutation(100, seed=2, epoch=2))


def _in_memory(images, labels):
  """A LongTailDataset holding these arrays as they are (train and test alike)."""
  return kd.LongTailDataset(
      name="toy", num_classes=int(labels.max()) + 1,
      class_names=[str(c) for c in range(int(labels.max()) + 1)],
      train_counts=np.bincount(labels), image_shape=images.shape[1:],
      mean=np.zeros(3, np.float32), std=np.ones(3, np.float32), train_images=images,
      train_labels=np.asarray(labels, np.int32), test_images=images, test_labels=labels)


def test_dataset_loader_shards_over_devices():
  mesh = sharding.make_mesh()
  assert mesh.devices.size == 4
  images, labels = _toy_arrays()  # 80 examples.
  loader = kd.DatasetLoader(_in_memory(images, labels), 16, mesh, seed=0)
  assert loader.steps_per_epoch == 5
  batches = list(loader.epoch(0))
  assert len(batches) == 5
  batch = batches[0]
  assert batch["image"].dtype == jnp.uint8 and batch["label"].dtype == jnp.int32
  assert batch["image"].sharding.is_equivalent_to(sharding.data_sharding(mesh), 4)
  assert {s.data.shape for s in batch["image"].addressable_shards} == {(4, 4, 4, 3)}
  seen = np.concatenate([np.asarray(b["image"])[:, 0, 0, 0] for b in batches])
  np.testing.assert_array_equal(np.sort(seen), np.sort(labels))
  # Resuming at step 2 replays the same batches; another epoch has another order.
  resumed = list(loader.epoch(0, start_step=2))
  for a, b in zip(resumed, batches[2:]):
    np.testing.assert_array_equal(a["image"], b["image"])
  assert not all(np.array_equal(a["label"], b["label"])
                 for a, b in zip(loader.epoch(1), batches))
  # Across epochs, the epoch and the position in it come from the step.
  run = list(kd.batches_from(loader, 3, 12))
  expected = batches[3:] + list(loader.epoch(1)) + list(loader.epoch(2, start_step=0))[:2]
  assert len(run) == 9
  for a, b in zip(run, expected):
    np.testing.assert_array_equal(a["image"], b["image"])


def test_dataset_loader_bad_batch():
  mesh = sharding.make_mesh()
  images, labels = _toy_arrays()
  with pytest.raises(ValueError, match="multiple of the 4 device"):
    kd.DatasetLoader(_in_memory(images, labels), 6, mesh, seed=0)
  three = [np.flatnonzero(labels == c)[0] for c in range(3)]  # one image of 3 classes
  with pytest.raises(ValueError, match="larger than the 3 training images"):
    kd.DatasetLoader(_in_memory(images[three], labels[three]), 4, mesh, seed=0)
  with pytest.raises(ValueError, match="labels"):
    next(loader_lib.host_epoch_batches(images, labels[:5], 4, seed=0, epoch=0))


def test_host_epoch_batches_keep_last():
  images, labels = _toy_arrays(n_per_class=5)  # 20 examples, batch 8 -> 3 steps.
  images[:, 0, 0, 1] = np.arange(20)  # Example ids.
  batches = list(loader_lib.host_epoch_batches(images, labels, 8, seed=0, epoch=0,
                                               drop_last=False))
  assert len(batches) == 3
  seen = np.concatenate([np.asarray(b["image"])[:, 0, 0, 1] for b in batches])
  # Every example at least once; the last batch is completed with 4 repeats.
  assert len(seen) == 24 and set(seen) == set(range(20))
  assert np.bincount(seen).max() == 2


def test_eval_batches_cover_every_example_once():
  mesh = sharding.make_mesh()
  images, labels = _toy_arrays(n_per_class=5)
  images[:, 0, 0, 1] = np.arange(20)  # Example ids.
  batches = list(kd.eval_batches(_in_memory(images, labels), "test", 8, mesh))
  assert len(batches) == 3
  assert all(b["image"].shape == (8, 4, 4, 3) for b in batches)
  ids = np.concatenate([np.asarray(b["image"])[np.asarray(b["mask"]), 0, 0, 1] for b in batches])
  np.testing.assert_array_equal(ids, np.arange(20))
  assert int(np.asarray(batches[-1]["mask"]).sum()) == 4
  with pytest.raises(ValueError, match="multiple"):
    next(kd.eval_batches(_in_memory(images, labels), "test", 10, mesh))


def test_in_memory_dataset_streams(digits_cache):
  _, ds = digits_cache
  batches = list(ds.train_stream(64, seed=0, epoch=0))
  assert len(batches) == 276 // 64 and batches[0]["image"].shape == (64, 8, 8, 1)
  test = list(ds.test_stream(128))
  assert sum(int(b["mask"].sum()) for b in test) == 300
  assert sum(int(b["mask"].sum()) for b in ds.test_stream(128, "val")) == 100


# ----------------------------------------------------------------------------- per-process rows


def _assert_rows_partition(ds, train_batch, eval_batch, split="test"):
  """Two processes' rows of every batch, put together, are the one-process batch, and
  each process yields as many batches (every one must join every step)."""
  halves = (slice(0, train_batch // 2), slice(train_batch // 2, train_batch))
  whole = list(ds.train_stream(train_batch, seed=1, epoch=2))
  parts = [list(ds.train_stream(train_batch, seed=1, epoch=2, rows=r)) for r in halves]
  assert len(whole) == len(parts[0]) == len(parts[1]) > 0
  for w, a, b in zip(whole, *parts):
    for key in w:
      np.testing.assert_array_equal(np.concatenate([a[key], b[key]]), w[key])
  halves = (slice(0, eval_batch // 2), slice(eval_batch // 2, eval_batch))
  whole = list(ds.test_stream(eval_batch, split))
  parts = [list(ds.test_stream(eval_batch, split, rows=r)) for r in halves]
  assert len(whole) == len(parts[0]) == len(parts[1]) > 0
  for w, a, b in zip(whole, *parts):
    assert a["image"].shape[0] == b["image"].shape[0] == eval_batch // 2
    for key in w:
      np.testing.assert_array_equal(np.concatenate([a[key], b[key]]), w[key])


def test_process_rows_in_memory():
  images, labels = _toy_arrays(n_per_class=5)
  ds = kd.from_arrays("toy", images, labels, images[:6], labels[:6])
  _assert_rows_partition(ds, train_batch=8, eval_batch=8)  # second share of eval empty


def test_process_rows_streamed_folder(tmp_path):
  root = _make_folder(tmp_path / "folder", {"train": 4, "test": 1})
  ds = kd.load_dataset("image_folder", data_dir=root, streaming=True, image_size=8)
  _assert_rows_partition(ds, train_batch=4, eval_batch=8)


def test_process_rows_split_lists(tmp_path):
  ds = kd.load_dataset("places_lt", data_dir=_make_places_tree(tmp_path / "p"), image_size=8)
  _assert_rows_partition(ds, train_batch=32, eval_batch=4)


def test_process_rows_of_one_process_is_whole_batch():
  mesh = sharding.make_mesh()
  assert sharding.process_rows(8, mesh) == slice(0, 8)
  with pytest.raises(ValueError, match="multiple"):
    sharding.process_rows(6, mesh)


@pytest.mark.parametrize("progress", [True, False])
def test_decoding_bar_follows_progress(digits_cache, capfd, progress):
  from krd_jax.data import decode, digits_tfds
  cache_dir, _ = digits_cache
  builder = digits_tfds.prepared_builder(str(cache_dir / "tfds"))
  capfd.readouterr()
  images, labels = decode.tfds_split_to_numpy(builder, "test", "id", "digits test bar",
                                              progress=progress)
  assert len(images) == len(labels) == 300
  assert ("digits test bar" in capfd.readouterr().err) == progress
