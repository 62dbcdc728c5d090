"""TensorFlow's environment for krd_jax's entry points, set before its first import."""

from __future__ import annotations

import os


def quiet_tensorflow() -> None:
  """No C++ info logs from TensorFlow, and its oneDNN graph rewrites off.

  TensorFlow only decodes and resizes images here. On CPUs where it turns oneDNN on by
  default (AVX-512 Xeons), TF 2.21 prints a notice at import that TF_CPP_MIN_LOG_LEVEL
  does not silence ("oneDNN custom operations are on ... slightly different numerical
  results"), so the same command's data could differ by round-off between machines.
  Variables the user set are kept.
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
