"""A run's folder: what configuration it holds, and files written whole or not at all.

Layout of a workdir:
  teacher/                 the teacher run (checkpoints/, final/, teacher.json)
  students/<name>/         one folder per student run (checkpoints/, final.json)
Each run folder also holds config.json (what resume must match), metrics.jsonl and
TensorBoard summaries (krd_jax.train.run_log). A student's config.json records the
checksum of the teacher it distils from: a resume against another teacher is another run,
refused like any other configuration.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from krd_jax import checks
from krd_jax import distributed
from krd_jax import methods


def role_json(cfg: ml_collections.ConfigDict, role: str) -> dict:
  """The parts of the config that define a run of `role` (what resume must match)."""
  keys = ["seed", "compute_dtype", "data", role]
  out = {k: json.loads(cfg[k].to_json_best_effort()) if isinstance(
      cfg[k], ml_collections.ConfigDict) else cfg[k] for k in keys}
  if role == "student":
    out["method_kwargs"] = cfg.methods[cfg.student.method].to_dict()
  return json.loads(json.dumps(out, default=str))


def teacher_sha256(teacher: Any) -> str | None:
  """The checksum of a saved teacher's variables (teacher.json), or None without one."""
  return None if teacher is None else teacher.meta.get("variables_sha256")


def reads_teacher(cfg: ml_collections.ConfigDict) -> bool:
  method = cfg.student.method
  return methods.get(method).needs_teacher(cfg.methods[method].to_dict())


def student_json(cfg: ml_collections.ConfigDict, teacher: Any) -> dict:
  """`role_json` of a student run, with the checksum of the teacher (a
  `krd_jax.train.teacher.Teacher`) it distils from where its method reads one."""
  out = role_json(cfg, "student")
  if teacher is not None and reads_teacher(cfg):
    out["teacher_sha256"] = teacher_sha256(teacher)
  return out


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(value, dict) and value:
    return {k: v for key, sub in value.items()
            for k, v in _flat(sub, f"{prefix}{key}.").items()}
  return {prefix[:-1]: value}


def config_difference(previous: dict, current: dict, limit: int = 3) -> str:
  """The first `limit` fields in which two runs' config.json differ, in words:
  "teacher.loss: 'ce' there, 'logit_adjusted' here"."""
  old, new = _flat(previous), _flat(current)
  missing = object()
  keys = sorted(k for k in set(old) | set(new) if old.get(k, missing) != new.get(k, missing))
  shown = lambda d, k: "(not recorded)" if k not in d else repr(d[k])
  words = [f"{k}: {shown(old, k)} there, {shown(new, k)} here" for k in keys[:limit]]
  more = f" (and {len(keys) - limit} more)" if len(keys) > limit else ""
  return "; ".join(words) + more


def check_same_run(run_dir: str, cfg_json: dict) -> bool:
  """Whether run_dir already holds a run (config.json); InputError, naming the fields
  that differ, if it holds a run of another configuration. Writes nothing."""
  path = os.path.join(run_dir, "config.json")
  if not os.path.exists(path):
    return False
  with open(path) as f:
    previous = json.load(f)
  if not same_run(previous, cfg_json):
    raise checks.InputError(
        f"config.workdir={os.path.dirname(os.path.normpath(run_dir))!r}: {run_dir} holds "
        f"a run of another configuration ({config_difference(previous, cfg_json)}); "
        "allowed: another workdir, or delete that folder")
  return True


def write_json_atomic(path: str, value: Any, **kwargs) -> None:
  """Writes JSON via a temporary file and a rename: a kill leaves old or new, whole.

  Process 0 writes; every process returns once the file is in place.
  """
  with distributed.primary_writes(f"write {path}") as write:
    if write:
      tmp = path + ".tmp"
      with open(tmp, "w") as f:
        json.dump(value, f, **kwargs)
      os.replace(tmp, path)


def check_run_dir(run_dir: str, cfg_json: dict) -> None:
  """Claims `run_dir` for a run of `cfg_json`, refusing one that holds another run."""
  exists = check_same_run(run_dir, cfg_json)
  # Every process decides on what it saw before process 0 may write the file.
  distributed.barrier(f"check {run_dir}")
  if exists:
    return
  if distributed.is_primary():
    os.makedirs(run_dir, exist_ok=True)
  write_json_atomic(os.path.join(run_dir, "config.json"), cfg_json, indent=1, sort_keys=True)


def same_run(previous: dict, current: dict) -> bool:
  """Whether a run folder's saved config.json (`previous`) holds the run of `current`."""
  return previous == current or only_new_defaults(previous, current)


def finished(run_dir: str, cfg_json: dict) -> dict | None:
  """The run's final.json where run_dir holds a finished run of `cfg_json`, else None."""
  try:
    with open(os.path.join(run_dir, "config.json")) as f:
      previous = json.load(f)
    with open(os.path.join(run_dir, "final.json")) as f:
      final = json.load(f)
  except FileNotFoundError:
    return None
  return final if same_run(previous, cfg_json) else None


def only_new_defaults(previous: dict, current: dict) -> bool:
  """Whether `current` differs from a saved run's config only by method hyper-parameters
  the library added since, at their defaults: then it is the same run (a BKD run from
  before `weights_from_epoch` existed had the weights on from epoch 0, the default)."""
  old, new = previous.get("method_kwargs"), current.get("method_kwargs")
  if not isinstance(old, dict) or not isinstance(new, dict):
    return False
  rest = lambda d: {k: v for k, v in d.items() if k != "method_kwargs"}
  if rest(previous) != rest(current) or any(new.get(k, object()) != v for k, v in old.items()):
    return False
  name = current.get("student", {}).get("method")
  if name not in methods.names():
    return False
  method = methods.get(name)
  defaults = method.defaults()
  # A knob whose default changed what the method computes (LTKD's rebalance) makes an
  # earlier run another run.
  return all(k in defaults and new[k] == defaults[k] and not method.params[k].changes_runs
             for k in set(new) - set(old))
