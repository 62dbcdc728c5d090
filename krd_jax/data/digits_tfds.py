"""`KrdDigits`: the digits split of `krd_jax.data.digits` as a real tfds dataset.

On first use it is written (TFRecords + dataset_info.json) under `<cache>/tfds`, with
no network; `krd_jax.data.sources` then reads it like any other tfds source. This
module imports tensorflow-datasets, so `sources` imports it only to build.
"""

from __future__ import annotations

import contextlib
import io
import sys

from absl import logging as absl_logging
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils as tfds_tqdm

from krd_jax.data.digits import HOLDOUT_SEED, NUM_CLASSES, TEST_PER_CLASS
from krd_jax.data.digits import balanced_holdout, digits_arrays


class KrdDigits(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """scikit-learn digits: a balanced 1497-image training pool and a 300-image test set."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {
      "1.0.0": f"{TEST_PER_CLASS} test images per class held out (seed {HOLDOUT_SEED}).",
  }
  # tfds 4.9.10 resolves `code_path` (to find a checksums file) through the
  # `importlib_resources` backport, which it does not install on Python >= 3.9. This
  # builder downloads nothing, so there is no checksums file to find.
  code_path = None

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="scikit-learn's 8x8 handwritten digits, ink rescaled to 0..255.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 1)),
            "label": tfds.features.ClassLabel(names=[str(c) for c in range(NUM_CLASSES)]),
            # Row of the example in sklearn.datasets.load_digits(): a stable order.
            "id": tfds.features.Scalar(dtype=np.int64),
        }),
        supervised_keys=("image", "label"),
        homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # The data is inside the scikit-learn wheel.
    images, labels = digits_arrays()
    pool, test = balanced_holdout(labels, TEST_PER_CLASS, HOLDOUT_SEED)
    return {
        "train": self._generate_examples(images, labels, pool),
        "test": self._generate_examples(images, labels, test),
    }

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {"image": images[i], "label": int(labels[i]), "id": int(i)}


def prepared_builder(data_dir: str) -> KrdDigits:
  """The digits builder under `data_dir`, generated there first if needed (offline).

  The first build says so in one line: tfds' own output for it (a warning that the
  folder it is about to fill has no dataset_info.json, "Downloading ... Unknown size"
  for a dataset that downloads nothing, three progress bars for a 7-second job) would
  read as trouble on a clean first run.
  """
  with _quiet_tfds():
    builder = KrdDigits(data_dir=data_dir)
    if not builder.is_prepared():
      print(f"krd_jax: building the embedded digits dataset under {data_dir} (first use "
            "only, a few seconds)", file=sys.stderr, flush=True)
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder


@contextlib.contextmanager
def _quiet_tfds():
  """tfds' stdout messages, progress bars and warnings off; errors still raise."""
  bars = tfds_tqdm._active  # pylint: disable=protected-access
  verbosity = absl_logging.get_verbosity()
  tfds.display_progress_bar(False)
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    tfds.display_progress_bar(bars)
    absl_logging.set_verbosity(verbosity)
