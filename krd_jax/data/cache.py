"""The on-disk cache of decoded datasets: keyed files, atomic writes, verified reads.

Each cached .npz has a sidecar manifest (`<file>.json`) holding the key it was built
for and the sha256 of its bytes. A read that finds no manifest, another key, or other
bytes (a truncated copy, a half-finished write from an older version, a file edited
by hand) reports a miss, and the caller rebuilds. Writes go to a temporary file that
is renamed into place, the manifest last, so a crash mid-write leaves a miss, never a
wrong hit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import tempfile
from typing import Any

import numpy as np

from krd_jax.data import npz

CACHE_ENV = "KRD_JAX_CACHE"
# Part of every key: bump it when a builder changes what it stores.
CACHE_VERSION = 1

log = logging.getLogger(__name__)


def default_cache_dir() -> pathlib.Path:
  """$KRD_JAX_CACHE, else ~/.cache/krd_jax."""
  return pathlib.Path(os.environ.get(CACHE_ENV) or "~/.cache/krd_jax").expanduser()


def cache_key(fields: dict[str, Any]) -> str:
  """A stable hex digest of JSON-able key fields (order of keys does not matter)."""
  text = json.dumps({"cache_version": CACHE_VERSION, **fields}, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(chunk):
      digest.update(block)
  return digest.hexdigest()


def _manifest_path(path: pathlib.Path) -> pathlib.Path:
  return path.with_name(path.name + ".json")


def read(path: str | os.PathLike, key: str) -> dict[str, np.ndarray] | None:
  """The arrays cached at `path` for `key`, or None (missing, stale or corrupt).

  Args:
    path: the cached .npz.
    key: the `cache_key` it must have been written for.

  Returns:
    A dict of arrays, or None on any kind of miss.
  """
  path = pathlib.Path(path)
  if not path.exists():
    return None
  try:
    manifest = json.loads(_manifest_path(path).read_text())
  except (OSError, ValueError):
    log.warning("cache file %s has no readable manifest; rebuilding", path)
    return None
  if manifest.get("key") != key:
    log.warning("cache file %s was built for another key; rebuilding", path)
    return None
  if manifest.get("sha256") != file_sha256(path):
    log.warning("cache file %s does not match its manifest (truncated?); rebuilding", path)
    return None
  try:
    return npz.read_npz(path)
  except Exception as e:  # pylint: disable=broad-except
    log.warning("cache file %s is unreadable (%r); rebuilding", path, e)
    return None


def write(path: str | os.PathLike, key: str, arrays: dict[str, np.ndarray],
          description: dict[str, Any] | None = None) -> None:
  """Atomically writes `arrays` to `path` and then its manifest.

  Args:
    path: the .npz to write.
    key: the `cache_key` the file answers.
    description: human-readable key fields, stored in the manifest for whoever
      inspects the cache directory.
  """
  path = pathlib.Path(path)
  npz.write_npz_atomic(path, arrays)
  manifest = {"key": key, "sha256": file_sha256(path), "fields": description or {}}
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
  with os.fdopen(fd, "w") as f:
    json.dump(manifest, f, indent=1, sort_keys=True, default=str)
  os.replace(tmp, _manifest_path(path))
