"""tf.data pipelines for datasets too large to hold in memory (ImageNet-LT, iNaturalist).

Decoding, augmentation and batching run in parallel tf.data maps with prefetch; the
pipelines yield numpy batches that the training loop shards with
`krd_jax.sharding.shard_batch`. Every random choice is a stateless op seeded by
(seed, epoch, example), and the example order comes from
`krd_jax.data.loader.epoch_permutation`, so a resumed run sees the same batches.

TensorFlow is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from krd_jax.data import loader

Batch = dict[str, np.ndarray]

TRANSFORMS = ("inception", "pad_crop")
# Fraction of the resized image kept by the evaluation centre crop (224 / 256).
EVAL_CROP_FRACTION = 0.875


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # tf.data must not grab the accelerator JAX trains on.
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # Already initialised; then it was set up by someone earlier.
    pass
  return tf


def epoch_seed(seed: int, epoch: int) -> int:
  """A 31-bit seed for one epoch's augmentation, a function of (seed, epoch)."""
  return int(np.random.default_rng([int(seed), int(epoch), 1]).integers(2**31 - 1))


def train_transform(image, example_seed, *, image_size: int, transform: str, pad: int = 4):
  """Augments one decoded uint8 image [H, W, 3] into uint8 [S, S, 3] (tf ops).

  Args:
    image: uint8 [H, W, 3] tensor.
    example_seed: int64 [2] stateless seed of this example.
    image_size: S.
    transform: "inception": random-resized crop (area 8%..100%, aspect 3/4..4/3)
      and flip, the ImageNet recipe; "pad_crop": resize to S if needed, zero-pad
      `pad` pixels, random S x S crop and flip, the CIFAR recipe.
    pad: padding of "pad_crop".

  References:
    Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 (inception crop).
  """
  tf = _tf()
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(example_seed, 2))
  if transform == "inception":
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.zeros([1, 0, 4]), seed=crop_seed,
        min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, size)
    image = _resize(image, image_size, image_size)
  elif transform == "pad_crop":
    image = _resize(image, image_size, image_size)
    image = tf.image.pad_to_bounding_box(image, pad, pad, image_size + 2 * pad,
                                         image_size + 2 * pad)
    image = tf.image.stateless_random_crop(image, (image_size, image_size, 3), seed=crop_seed)
  else:
    raise ValueError(f"unknown transform {transform!r}; expected one of {TRANSFORMS}")
  return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def eval_transform(image, *, image_size: int, transform: str):
  """Deterministic evaluation view: resize + centre crop ("inception") or resize."""
  tf = _tf()
  if transform == "inception":
    # Resize the shorter side to S / 0.875, then take the central S x S.
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = (image_size / EVAL_CROP_FRACTION) / tf.reduce_min(shape)
    new = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    image = _resize(image, new[0], new[1])
    return tf.image.resize_with_crop_or_pad(image, image_size, image_size)
  return _resize(image, image_size, image_size)


def _resize(image, height, width):
  tf = _tf()
  shape = tf.shape(image)

  def resized():
    out = tf.image.resize(image, tf.stack([height, width]), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)

  # Skip the float round trip for images already at the size (CIFAR at 32).
  same = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))
  return tf.cond(same, lambda: tf.cast(image, tf.uint8), resized)


def _decode_file(path):
  tf = _tf()
  image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def pad_batch(batch: Batch, size: int) -> Batch:
  """Pads a short evaluation batch to `size` examples and adds the "mask" key."""
  real = len(batch["label"])
  out = {}
  for key, value in batch.items():
    padded = np.zeros((size, *value.shape[1:]), value.dtype)
    padded[:real] = value
    out[key] = padded
  out["mask"] = np.arange(size) < real
  return out


def _as_numpy(ds) -> Iterator[Batch]:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return iter(tfds.as_numpy(ds))


def _local_size(global_batch: int, rows: slice | None) -> int:
  """Examples per batch this process yields: its rows, or the whole batch."""
  return global_batch if rows is None else rows.stop - rows.start


def _slice_rows(batched_ds, rows: slice):
  """Keeps `rows` of every batch of a batched tf.data dataset (any structure)."""
  tf = _tf()
  return batched_ds.map(
      lambda *b: tf.nest.map_structure(lambda t: t[rows.start:rows.stop], b))


def _rows_of_batches(ds, batch: int, rows: slice | None):
  """Encoded examples -> this process's rows of every full global batch, unbatched.

  Runs before decoding, so a process reads and decodes only its share.
  """
  if rows is None:
    return ds
  return _slice_rows(ds.batch(batch, drop_remainder=True), rows).unbatch()


def _eval_rows_stream(ds, batch: int, rows: slice, load, image_size: int) -> Iterator[Batch]:
  """This process's rows of every evaluation batch, decoded and padded.

  Batches first, then slices, then decodes inside each batch: a process reads only
  its rows, and yields one batch per global batch even where its share is empty
  (every process must join every evaluation step).
  """
  tf = _tf()
  ds = _slice_rows(ds.batch(batch), rows)
  signature = {"image": tf.TensorSpec([image_size, image_size, 3], tf.uint8),
               "label": tf.TensorSpec([], tf.int32)}

  def decode(*b):
    return tf.map_fn(lambda ex: load(*ex), b, fn_output_signature=signature)

  ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  size = _local_size(batch, rows)
  return (pad_batch(b, size) for b in _as_numpy(ds.prefetch(tf.data.AUTOTUNE)))


def file_list_train_stream(
    paths: Sequence[str],
    labels: np.ndarray,
    global_batch: int,
    seed: int,
    epoch: int,
    start_step: int = 0,
    *,
    image_size: int,
    transform: str = "inception",
    rows: slice | None = None,
) -> Iterator[Batch]:
  """Augmented batches {"image": uint8 [B,S,S,3], "label": int32 [B]} of one epoch.

  Args:
    paths: image files (JPEG / PNG / BMP / GIF).
    labels: int [N].
    global_batch: B; the incomplete last batch is dropped.
    seed, epoch: fix the order and every augmentation.
    start_step: first batch to produce (resume); earlier files are never read.
    image_size: S.
    transform: see `train_transform`.
    rows: only these rows of every batch (this process's share); other files are
      never read.
  """
  tf = _tf()
  if global_batch <= 0:
    raise ValueError(f"global batch size must be positive, got {global_batch}")
  n = len(labels)
  order = loader.epoch_permutation(n, seed, epoch)
  order = order[int(start_step) * global_batch:(n // global_batch) * global_batch]
  base = epoch_seed(seed, epoch)
  if rows is not None:  # this process's rows of every batch, chosen before any read
    order = order.reshape(-1, global_batch)[:, rows].reshape(-1)
  seeds = np.stack([np.full(len(order), base, np.int64), order], axis=1)
  ds = tf.data.Dataset.from_tensor_slices(
      (np.asarray(paths)[order], np.asarray(labels, np.int32)[order], seeds))

  def load(path, label, example_seed):
    image = train_transform(_decode_file(path), example_seed, image_size=image_size,
                            transform=transform)
    return {"image": image, "label": label}

  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(_local_size(global_batch, rows), drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  return _as_numpy(ds)


def file_list_eval_stream(paths: Sequence[str], labels: np.ndarray, batch: int, *,
                          image_size: int, transform: str = "inception",
                          rows: slice | None = None) -> Iterator[Batch]:
  """Evaluation batches {"image", "label", "mask"}, every file once, last padded.

  With `rows`, only those rows of every batch are read (this process's share).
  """
  tf = _tf()
  if batch <= 0:
    raise ValueError(f"batch size must be positive, got {batch}")
  ds = tf.data.Dataset.from_tensor_slices((list(paths), np.asarray(labels, np.int32)))

  def load(path, label):
    image = eval_transform(_decode_file(path), image_size=image_size, transform=transform)
    return {"image": image, "label": label}

  if rows is not None:
    return _eval_rows_stream(ds, batch, rows, load, image_size)
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch).prefetch(tf.data.AUTOTUNE)
  return (pad_batch(b, batch) for b in _as_numpy(ds))


def tfds_train_stream(builder: Any, split: str, global_batch: int, seed: int, epoch: int,
                      start_step: int = 0, *, image_size: int, transform: str = "inception",
                      shuffle_buffer: int = 16384,
                      rows: slice | None = None) -> Iterator[Batch]:
  """Augmented training batches from a prepared tfds builder with an "image" feature.

  Files are read in a seeded order and examples pass a seeded shuffle buffer, so the
  stream is a function of (seed, epoch). Images stay encoded until after
  `start_step * global_batch` examples are skipped, so resuming costs reads, not
  decodes. With `rows`, a process decodes only its rows of every global batch.
  """
  tf = _tf()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  base = epoch_seed(seed, epoch)
  ds = builder.as_dataset(
      split=split, shuffle_files=True,
      decoders={"image": tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(shuffle_seed=base, interleave_cycle_length=16))
  ds = ds.shuffle(shuffle_buffer, seed=base, reshuffle_each_iteration=False)
  ds = ds.enumerate().skip(int(start_step) * global_batch)
  ds = _rows_of_batches(ds, global_batch, rows)
  image_feature = builder.info.features["image"]

  def load(index, ex):
    image = image_feature.decode_example(ex["image"])
    example_seed = tf.stack([tf.constant(base, tf.int64), index])
    image = train_transform(image, example_seed, image_size=image_size, transform=transform)
    return {"image": image, "label": tf.cast(ex["label"], tf.int32)}

  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(_local_size(global_batch, rows), drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  return _as_numpy(ds)


def tfds_eval_stream(builder: Any, split: str, batch: int, *, image_size: int,
                     transform: str = "inception",
                     rows: slice | None = None) -> Iterator[Batch]:
  """Evaluation batches {"image", "label", "mask"} of a tfds split, last padded.

  With `rows`, only those rows of every batch are decoded (this process's share).
  """
  tf = _tf()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={"image": tfds.decode.SkipDecoding()})
  image_feature = builder.info.features["image"]

  def load(ex):
    image = eval_transform(image_feature.decode_example(ex["image"]),
                           image_size=image_size, transform=transform)
    return {"image": image, "label": tf.cast(ex["label"], tf.int32)}

  if rows is not None:
    return _eval_rows_stream(ds, batch, rows, load, image_size)
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch).prefetch(tf.data.AUTOTUNE)
  return (pad_batch(b, batch) for b in _as_numpy(ds))


def tfds_label_counts(builder: Any, split: str, num_classes: int,
                      progress: bool = True) -> np.ndarray:
  """Examples per class of a tfds split, reading labels only (images stay encoded)."""
  tf = _tf()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={"image": tfds.decode.SkipDecoding()})
  ds = ds.map(lambda ex: ex["label"], num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(65536).prefetch(tf.data.AUTOTUNE)
  counts = np.zeros(num_classes, np.int64)
  for labels in tqdm.tqdm(tfds.as_numpy(ds), desc=f"counting {split} labels", unit="batch",
                          disable=not progress):
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
      raise ValueError(f"{split} labels outside [0, {num_classes}): {labels.max()}")
    counts += np.bincount(labels, minlength=num_classes)
  return counts

