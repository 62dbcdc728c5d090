"""A run folder is reused or resumed only by the configuration that made it: a teacher
folder by its teacher configuration, a student folder by its configuration and teacher,
a checkpoint by a state of its own tree. Anything else is refused in one line naming
what differs, before anything is written, moved or restarted."""

import os

import jax.numpy as jnp
import optax
import pytest

from krd_jax import __main__ as cli_lib
from krd_jax.train import checkpoints as ckpt_lib
from krd_jax.train.state import create_state

LOCAL = ["--config=digits_lt:local", "--config.progress=False"]


def _tree_listing(root):
  return sorted((d, tuple(sorted(f))) for d, _, f in os.walk(root))


def _refused(capsys, args) -> str:
  capsys.readouterr()
  assert cli_lib.cli(["krd_jax", *args]) == cli_lib.EXIT_BAD_INPUT
  err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
  assert len(err) == 1, err
  return err[0]


def test_a_teacher_folder_is_reused_only_by_the_teacher_configuration_that_made_it(
    tmp_path, capsys):
  workdir = tmp_path / "w"
  base = [*LOCAL, f"--config.workdir={workdir}", "--config.demo_methods=('kd',)"]
  assert cli_lib.cli(["krd_jax", "demo", *base]) == 0
  before = _tree_listing(workdir)
  for override, words in [("--config.teacher.loss=logit_adjusted",
                           "teacher.loss: 'ce' there, 'logit_adjusted' here"),
                          ("--config.teacher.epochs=3", "teacher.epochs: 20 there, 3 here"),
                          ("--config.seed=1", "seed: 0 there, 1 here")]:
    line = _refused(capsys, ["demo", *base, override])
    assert f"{workdir}/teacher holds a run of another configuration ({words})" in line
  assert _tree_listing(workdir) == before  # nothing written, nothing reused
  assert cli_lib.cli(["krd_jax", "demo", *base]) == 0  # its own configuration reuses it


def test_a_student_is_resumed_only_against_the_teacher_it_was_distilled_from(
    tmp_path, capsys):
  """A student folder records its teacher's checksum: pointing teacher.checkpoint at
  another teacher is another run (refused), not a resume of this one."""
  workdir, other = tmp_path / "w", tmp_path / "other"
  student = ["student", *LOCAL, "--config.student.method=kd"]
  assert cli_lib.cli(["krd_jax", *student, f"--config.workdir={workdir}"]) == 0
  assert cli_lib.cli(["krd_jax", "teacher", *LOCAL, f"--config.workdir={other}",
                      "--config.teacher.loss=logit_adjusted"]) == 0
  before = _tree_listing(workdir / "students")
  line = _refused(capsys, [*student, f"--config.workdir={workdir}",
                           f"--config.teacher.checkpoint={other / 'teacher'}"])
  assert f"{workdir}/students/kd holds a run of another configuration (teacher_sha256: " \
      in line
  assert _tree_listing(workdir / "students") == before
  # The same teacher named by path is the same run.
  assert cli_lib.cli(["krd_jax", *student, f"--config.workdir={workdir}",
                      f"--config.teacher.checkpoint={workdir / 'teacher'}"]) == 0


def _state(params):
  return create_state(params, {}, optax.sgd(0.1, momentum=0.9))


def test_a_checkpoint_of_another_tree_is_refused_not_quarantined(tmp_path):
  """A method that gained parameters since the checkpoint was written: the restore names
  the paths that differ; the checkpoint stays where it is and is not replaced."""
  saved = ckpt_lib.RunCheckpoints(str(tmp_path / "checkpoints"))
  saved.save(_state({"model": {"w": jnp.ones((3, 2))}}), {"epoch": 1})
  grown = _state({"model": {"w": jnp.ones((3, 2))}, "method": {"k": jnp.zeros((4,))}})
  with pytest.raises(ckpt_lib.CheckpointTreeMismatch,
                     match=r"holds another run's state \(opt_state/0/trace/method/k only "
                           r"in this run; params/method/k only in this run\)"):
    saved.restore_latest(grown)
  reshaped = _state({"model": {"w": jnp.ones((3, 5))}})
  with pytest.raises(ckpt_lib.CheckpointTreeMismatch,
                     match=r"params/model/w is \(3, 2\) float32 there, \(3, 5\) float32 here"):
    saved.restore_latest(reshaped)
  assert saved.manager.all_steps() == [0]
  assert not os.path.exists(str(tmp_path / "checkpoints.unreadable"))
  state, meta = saved.restore_latest(_state({"model": {"w": jnp.zeros((3, 2))}}))
  assert float(state.params["model"]["w"].sum()) == 6.0 and meta == {"epoch": 1}


def test_tree_difference_reads_dicts_lists_and_named_tuples_alike():
  state = _state({"model": {"w": jnp.ones(2)}})
  as_saved = {"step": jnp.zeros((), jnp.int32), "params": {"model": {"w": jnp.ones(2)}},
              "batch_stats": {}, "opt_state": [{"trace": {"model": {"w": jnp.ones(2)}}}, None]}
  assert ckpt_lib.tree_difference(as_saved, state.trainable()) is None
