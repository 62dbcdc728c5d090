"""One experiment: the data, the mesh and the teacher that a run or a sweep shares.

Every entry point starts here: the CLI's commands (`krd_jax.runs`), the ablation runner
(`krd_jax.ablate`), the notebook and the benchmarks. An `Experiment` loads its dataset
once, builds its mesh once and loads its teacher once (or trains it once, rebuilding a
corrupt saved teacher from its run's checkpoints); every student run it trains, alone
or as a group of seeds in parallel, reuses them.

Example:
  exp = Experiment.start(cfg, "student")     # checks the config before any work
  exp.train_student(cfg, "runs/x/students/krd")
  exp.train_students_parallel([with_seed(cfg, s) for s in (0, 1)], run_dirs, group_dir)
  exp.train_cohort([with_method(cfg, m) for m in ("kd", "krd")], run_dirs, cohort_dir)
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

import ml_collections
from jax.sharding import Mesh

from krd_jax import distributed
from krd_jax import sharding
from krd_jax import validate
from krd_jax.data import load_dataset
from krd_jax.train import checkpoints
from krd_jax.train import cohort as cohort_lib
from krd_jax.train import evaluation
from krd_jax.train import seeds as seeds_lib
from krd_jax.train import steps as steps_lib
from krd_jax.train import student as student_lib
from krd_jax.train import teacher as teacher_lib


class Experiment:
  """A dataset, a `data` mesh and a teacher, each made at most once (see module doc).

  Attributes:
    cfg: the config the data, mesh and teacher come from (its `seed` seeds the teacher).
    teacher_dir: where the teacher is saved (or trained): `teacher.checkpoint` where
      set, else the given folder, else <workdir>/teacher.
    teacher_trained: whether this experiment trained its teacher (rather than loading it).
  """

  def __init__(self, cfg: ml_collections.ConfigDict, teacher_dir: str | None = None,
               data=None, teacher: teacher_lib.Teacher | None = None):
    """Nothing is loaded, built or written yet.

    Args:
      cfg: the run's config (data, teacher, mesh and run-wide fields).
      teacher_dir: the teacher's folder when not <workdir>/teacher (a sweep keeps one
        per data + teacher configuration).
      data: an already loaded dataset for `cfg.data` (a sweep passes it on between
        experiments that differ only in their teacher); loaded on first use if None.
      teacher: an already made teacher (benchmarks use a random one).
    """
    self.cfg = cfg
    self.teacher_dir = (cfg.teacher.checkpoint or teacher_dir or
                        os.path.join(cfg.workdir, "teacher"))
    self._data = data
    self._teacher = teacher
    self.teacher_trained = False

  @classmethod
  def start(cls, cfg: ml_collections.ConfigDict, command: str) -> Experiment:
    """Checks everything `command` needs (validate.check_run), starting JAX's
    distributed runtime first where the config or the environment asks for it, and
    loads the data: bad input is refused before anything is written."""
    validate.check_distributed(cfg)
    distributed.initialize(cfg.distributed)
    validate.check_run(cfg, command)
    exp = cls(cfg)
    exp.data  # pylint: disable=pointless-statement  (a data error, before any write)
    return exp

  # ---------------------------------------------------------------------- made once

  @property
  def data(self):
    """The dataset `cfg.data` names (decoded and cached after the first call)."""
    if self._data is None:
      self._data = load_data(self.cfg)
    return self._data

  @functools.cached_property
  def mesh(self) -> Mesh:
    """The `data` mesh over `cfg.num_devices` (0: every device)."""
    return make_mesh(self.cfg)

  def teacher(self) -> teacher_lib.Teacher:
    """The teacher: loaded from `teacher_dir`, or trained there first (once)."""
    if self._teacher is None:
      self._teacher, self.teacher_trained = teacher_lib.ensure_teacher(
          self.cfg, self.data, self.mesh, self.teacher_dir)
    return self._teacher

  def saved_teacher(self) -> teacher_lib.Teacher | None:
    """The saved teacher, loaded (nothing is trained or rebuilt), else None."""
    if self._teacher is None:
      if checkpoints.read_teacher_meta(self.teacher_dir) is None:
        return None
      self._teacher = teacher_lib.load_teacher(self.cfg.teacher, self.cfg.compute_dtype,
                                               self.data, self.mesh, self.teacher_dir)
    return self._teacher

  def sibling(self, cfg: ml_collections.ConfigDict,
              teacher_dir: str | None = None) -> Experiment:
    """An experiment on this one's data (`cfg.data` must equal it) with another teacher
    or mesh: a sweep moves from one teacher to the next without decoding twice."""
    return Experiment(cfg, teacher_dir, data=self._data)

  def teacher_post_hoc(self) -> dict:
    """`evaluation.post_hoc_adjusted` of the teacher (tau chosen on val where there is
    a validation split)."""
    t = self.teacher()
    return evaluation.post_hoc_adjusted(t.model, t.variables, self.preprocess(), self.data,
                                        self.mesh)

  def teacher_test(self) -> dict:
    """The teacher's test summary, evaluated now."""
    t = self.teacher()
    eval_step = steps_lib.jit_eval_step(steps_lib.make_eval_step(
        t.model, self.preprocess(), self.data.num_classes), self.mesh)
    return evaluation.evaluate(eval_step, t.variables, self.data, "test", self.mesh)

  def preprocess(self):
    """Augmentation and normalisation of this experiment's images."""
    return steps_lib.dataset_preprocess(self.cfg.data, self.data, self.cfg.compute_dtype)

  # ---------------------------------------------------------------------- students

  def teacher_for(self, cfg: ml_collections.ConfigDict) -> teacher_lib.Teacher | None:
    """The teacher where `cfg`'s student method reads one, else None (not even loaded)."""
    return self.teacher() if validate.needs_teacher(cfg, cfg.student.method) else None

  def train_student(self, cfg: ml_collections.ConfigDict, run_dir: str) -> dict:
    """Trains (or resumes) the student of `cfg` in run_dir; its test summary."""
    return student_lib.train_student(cfg, self.data, self.mesh, self.teacher_for(cfg),
                                     run_dir)

  def evaluate_student(self, cfg: ml_collections.ConfigDict, run_dir: str,
                       teacher: teacher_lib.Teacher | None) -> dict:
    """The newest intact checkpoint of run_dir, evaluated (nothing trained or written)."""
    return student_lib.train_student(cfg, self.data, self.mesh, teacher, run_dir,
                                     evaluate_only=True)

  def train_cohort(self, cfgs: Sequence[ml_collections.ConfigDict],
                   run_dirs: Sequence[str], cohort_dir: str) -> list[dict]:
    """The students of one seed and several methods as one program that runs the teacher
    once per step for all of them (krd_jax.train.cohort)."""
    readers = any(validate.needs_teacher(c, c.student.method) for c in cfgs)
    return cohort_lib.train_cohort(cfgs, self.data, self.mesh,
                                   self.teacher() if readers else None, run_dirs,
                                   cohort_dir)

  def train_students_parallel(self, cfgs: Sequence[ml_collections.ConfigDict],
                              run_dirs: Sequence[str], group_dir: str) -> list[dict]:
    """The seeds of one student run as one vmapped program (krd_jax.train.seeds)."""
    return seeds_lib.train_students_parallel(cfgs, self.data, self.mesh,
                                             self.teacher_for(cfgs[0]), run_dirs,
                                             group_dir)


def make_mesh(cfg: ml_collections.ConfigDict) -> Mesh:
  """The `data` mesh over `cfg.num_devices` (0: every device); batches were checked
  against it by `validate.check_run`."""
  return sharding.make_mesh(cfg.num_devices or None)


def load_data(cfg: ml_collections.ConfigDict):
  """The dataset `cfg.data` names (cached after the first call).

  Raises:
    validate.InputError: the data layer refused the data (a ValueError: empty
      classes, labels outside [0, C), split-list paths escaping the root, ...) or
      an image would not decode.
  """
  d = cfg.data
  try:
    load = functools.partial(
        load_dataset, d.name, imbalance=d.imbalance, profile=d.profile, seed=d.seed,
        val_per_class=d.val_per_class, data_dir=d.data_dir or None,
        split_list_dir=d.split_list_dir or None, cache_dir=d.cache_dir or None,
        n_max=d.n_max or None, image_size=d.image_size or None,
        streaming=True if d.streaming else None,
        progress=bool(cfg.progress) and distributed.is_primary())
    # Process 0 prepares and caches the data first; the others then read its cache.
    return distributed.primary_first(f"load {d.name}", load)
  except validate.InputError:
    raise
  except Exception as error:  # pylint: disable=broad-except
    if not isinstance(error, ValueError) and not _is_decode_error(error):
      raise
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    raise validate.InputError(f"config.data.name={d.name!r}: the data was refused: "
                              f"{first}") from error


def _is_decode_error(error: BaseException) -> bool:
  """A TensorFlow op error (an image that would not decode), without importing TF."""
  return type(error).__module__.startswith("tensorflow")
