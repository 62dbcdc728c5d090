"""Seeds in parallel: N student runs that differ only in seed, as one vmapped program.

Each seed keeps what makes it a seed: its own initial parameters, optimiser state,
data order and augmentation key. The states are stacked on a leading seed axis and
the student step is `jax.vmap`ped over it (the teacher is shared, not stacked), so
one jitted step trains every seed; batches are [S, B, ...] with B sharded over the
`data` mesh axis. Small models leave an accelerator mostly idle at one seed per
program; stacking fills it. Not on CPU with convolutional students (`pays_off`):
there the seeds are faster in turn.

The group checkpoints, resumes and logs (means over seeds) as one run in its own
folder; at the end each seed's run folder gets the config.json and final.json a solo
run of that seed would have written, so sweeps read them the same way.

Example:
  cfgs = [with_seed(cfg, s) for s in (0, 1, 2, 3)]
  summaries = train_students_parallel(cfgs, ds, mesh, teacher,
                                      [f"runs/s{s}" for s in (0, 1, 2, 3)], "runs/group")
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from krd_jax import methods
from krd_jax import sharding
from krd_jax.data import loader as loader_lib
from krd_jax.train import evaluation
from krd_jax.train import loop
from krd_jax.train import metrics as metrics_lib
from krd_jax.train import run_dir as run_dir_lib
from krd_jax.train import state as state_lib
from krd_jax.train import steps as steps_lib
from krd_jax.train import student as student_lib
from krd_jax.train.state import TrainState
from krd_jax.train.teacher import Teacher

SEED_AXIS = 0


def seed_dependence(method: str, hparams: Mapping[str, Any]) -> str | None:
  """None if every seed of a `method` student run with `hparams` (`config.methods.
  <method>`) shares one objective (a vmapped group needs that), else why not (the
  method says: KRDistill with random anchors)."""
  method_ = methods.get(method)
  return method_.seed_dependence(method_.check(dict(hparams)))


def check_group(cfgs: Sequence[ml_collections.ConfigDict]) -> None:
  """Raises ValueError unless `cfgs` are distinct seeds of one otherwise equal run."""
  if not cfgs:
    raise ValueError("parallel seeds: no runs given")
  seeds = [c.seed for c in cfgs]
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"parallel seeds: repeated seeds {seeds}")

  def without_seed(c):
    d = json.loads(c.to_json_best_effort())
    d.pop("seed")
    return d

  first = without_seed(cfgs[0])
  for c in cfgs[1:]:
    other = without_seed(c)
    if other != first:
      keys = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
      raise ValueError(f"parallel seeds: the runs differ in {keys}, not only in seed")
  reason = seed_dependence(cfgs[0].student.method,
                           cfgs[0].methods[cfgs[0].student.method].to_dict())
  if reason:
    raise ValueError(f"parallel seeds: {reason}")


def stack(trees: Sequence[Any]) -> Any:
  """Pytrees of equal structure -> one pytree with a leading seed axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: Any, index: int) -> Any:
  """Seed `index` of a stacked pytree."""
  return jax.tree.map(lambda x: x[index], tree)


def _state_axes() -> TrainState:
  """vmap axes of a stacked state: everything on the seed axis but the shared teacher
  and the step count (equal for every seed; a scalar, as fit and checkpoints expect)."""
  return TrainState(step=None, teacher=None,
                    **{field: SEED_AXIS for field in state_lib.MEMBER_FIELDS})


def pays_off(student_model: str) -> bool:
  """Whether vmapping this run's seeds is expected to be faster than running them in
  turn: not for convolutional students on CPU, where XLA:CPU runs seed-batched
  convolutions as grouped ones (ResNet-8 on 2 cores: 0.53x the speed of the seeds in
  turn; seed after seed inside one program, `lax.map`, 0.69x: benchmarks/RESULTS.md)."""
  return not (jax.default_backend() == "cpu" and student_model != "mlp")


def jit_seed_step(step: Callable, mesh: Mesh, donate: bool = True) -> Callable:
  """The student step vmapped over seeds and jitted: state and keys replicated, batch
  [S, B, ...] with B over `data`."""
  axes = _state_axes()
  vmapped = jax.vmap(step, in_axes=(axes, SEED_AXIS, SEED_AXIS), out_axes=(axes, SEED_AXIS))
  replicated = sharding.replicated(mesh)
  return jax.jit(vmapped,
                 in_shardings=(replicated, sharding.batch_sharding(mesh, 1), replicated),
                 out_shardings=(replicated, replicated),
                 donate_argnums=(0,) if donate else (),
                 compiler_options=steps_lib.compiler_options(mesh))


def jit_seed_eval_step(eval_step: Callable, mesh: Mesh) -> Callable:
  """Evaluation of every seed's variables on one (unstacked) batch: sums [S, C]."""
  return steps_lib.jit_eval_step(jax.vmap(eval_step, in_axes=(SEED_AXIS, None)), mesh)


def seed_setups(cfgs: Sequence[ml_collections.ConfigDict], ds, mesh: Mesh,
                teacher: Teacher | None) -> list[student_lib.StudentSetup]:
  """`student.student_setup` of each seed, sharing one objective (check_group refused
  seed-dependent ones): the method's constants (the ETF anchors, from the teacher's
  class means) are computed once."""
  first = student_lib.student_setup(cfgs[0], ds, mesh, teacher)
  return [first] + [student_lib.student_setup(c, ds, mesh, teacher, first.constants)
                    for c in cfgs[1:]]


def stacked_state(setups: Sequence[student_lib.StudentSetup], teacher_variables: Any,
                  mesh: Mesh) -> tuple[TrainState, jax.Array]:
  """The seeds' fresh states stacked (one step count, one shared teacher) and their
  training keys [S, 2], replicated on the mesh."""
  state = stack([s.state for s in setups]).replace(step=setups[0].state.step,
                                                   teacher=teacher_variables)
  return (sharding.replicate(state, mesh),
          sharding.replicate(jnp.stack([s.rng for s in setups]), mesh))


class StackedLoader:
  """Batches [S, B, ...]: batch s of each step is seed s's own loader's batch."""

  def __init__(self, loaders: Sequence[loader_lib.DatasetLoader], mesh: Mesh):
    if len({l.steps_per_epoch for l in loaders}) != 1:
      raise ValueError("parallel seeds: the seeds' loaders differ in steps per epoch")
    self.loaders = list(loaders)
    self.mesh = mesh
    self.global_batch = loaders[0].global_batch
    self.steps_per_epoch = loaders[0].steps_per_epoch

  def host_epoch(self, epoch: int, start_step: int = 0) -> Iterator[dict]:
    streams = [l.host_epoch(epoch, start_step) for l in self.loaders]
    for batches in zip(*streams):
      yield {k: np.stack([b[k] for b in batches]) for k in batches[0]}

  def epoch(self, epoch: int, start_step: int = 0) -> Iterator[dict]:
    return loader_lib.start_global(self.host_epoch(epoch, start_step), self.mesh,
                                       batch_axis=1, global_batch=self.global_batch)


def evaluate_seeds(eval_step: Callable, variables: Any, ds, split: str,
                   mesh: Mesh) -> list[dict]:
  """One accuracy summary (metrics.summarize) per seed of stacked `variables`."""
  correct, total = evaluation.split_sums(eval_step, variables, ds, split, mesh)
  return [metrics_lib.summarize(c, t, ds.train_counts) for c, t in zip(correct, total)]


def mean_summary(summaries: Sequence[dict], seeds: Sequence[int]) -> dict:
  """Seed-mean of each scalar (what the group logs and ranks checkpoints by), plus
  each seed's balanced accuracy."""
  scalars = [k for k, v in summaries[0].items() if isinstance(v, (int, float))]
  out = {k: float(np.mean([s[k] for s in summaries])) for k in scalars}
  out.update({f"balanced_seed{seed}": s["balanced"] for seed, s in zip(seeds, summaries)})
  return out


def train_students_parallel(cfgs: Sequence[ml_collections.ConfigDict], ds, mesh: Mesh,
                            teacher: Teacher | None, run_dirs: Sequence[str],
                            group_dir: str) -> list[dict]:
  """Trains the students of `cfgs` (one run, several seeds) as one vmapped program.

  Args:
    cfgs: configs equal but for `seed` (see `check_group`).
    ds, mesh, teacher: as for `student.train_student`.
    run_dirs: each seed's run folder; config.json and final.json are written there
      at the end, as a solo run would.
    group_dir: the group's own run folder (checkpoints, metrics.jsonl); the same
      command resumes it after an interruption.

  Returns:
    Each seed's final test summary, in the order of `cfgs`.

  Raises:
    ValueError: the configs are not one run's seeds, or run_dirs does not match.
    loop.NonFiniteLossError: any seed's loss became NaN/Inf (the group stops).
  """
  check_group(cfgs)
  if len(run_dirs) != len(cfgs):
    raise ValueError(f"parallel seeds: {len(cfgs)} configs but {len(run_dirs)} run folders")
  setups = seed_setups(cfgs, ds, mesh, teacher)
  first = setups[0]
  seeds = [c.seed for c in cfgs]
  state, rngs = stacked_state(setups, student_lib.private_teacher_copy(
      first.teacher_variables), mesh)
  step_fn = jit_seed_step(first.step, mesh)
  eval_step = jit_seed_eval_step(first.eval_step, mesh)

  def eval_fn(s: TrainState, split: str) -> dict:
    return mean_summary(evaluate_seeds(eval_step, s.model_variables(), ds, split, mesh),
                        seeds)

  # Only now is anything written: every check above runs first. A seed folder that
  # holds a run of another configuration is refused before any training.
  for cfg, run_dir in zip(cfgs, run_dirs):
    run_dir_lib.check_run_dir(run_dir, run_dir_lib.student_json(cfg, teacher))
  group_json = {**run_dir_lib.student_json(cfgs[0], teacher), "seed": None, "seeds": seeds}
  run_dir_lib.check_run_dir(group_dir, group_json)
  scfg = cfgs[0].student
  state = loop.fit(run_dir=group_dir, cadence=loop.Cadence.of(cfgs[0]),
                   epochs=scfg.epochs, state=state,
                   step_fn=step_fn, eval_fn=eval_fn,
                   loader=StackedLoader([s.loader for s in setups], mesh), rng=rngs,
                   desc=f"student {scfg.model} {scfg.method} x{len(seeds)} seeds",
                   select_split=evaluation.select_split(ds))
  tests, vals = evaluation.test_and_val(
      lambda split: evaluate_seeds(eval_step, state.model_variables(), ds, split, mesh), ds)
  vals = vals or [None] * len(seeds)
  # Each seed's post-hoc logit adjustment, as a solo run records it (the bar includes
  # the best plain student, adjusted).
  preprocess = first.preprocess
  post_hoc_step = evaluation.post_hoc_step(first.model, preprocess, ds, mesh)  # one compile
  variables = state.model_variables()
  for i, (run_dir, setup, test, val) in enumerate(zip(run_dirs, setups, tests, vals)):
    post_hoc = evaluation.post_hoc_adjusted(first.model, unstack(variables, i), preprocess,
                                            ds, mesh, step=post_hoc_step)
    student_lib.write_final(run_dir, scfg, test, val, post_hoc, setup.constants,
                            trained_in=os.path.abspath(group_dir))
  return tests
