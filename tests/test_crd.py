"""CRD: its NCE loss, bank update and negatives against float64 numpy written from the
authors' formulas; its objective and next state; the method's state through the train
step (never seen by the optimiser) and a checkpoint resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from krd_jax import methods
from krd_jax.losses import contrastive

B, N, D, K = 4, 12, 3, 5


def _unit(a):
  return a / np.linalg.norm(a, axis=-1, keepdims=True)


def np_contrast_loss(x, n):
  noise = (x.shape[1] - 1) / n
  return -(np.log(x[:, 0] / (x[:, 0] + noise + 1e-7)) +
           np.log(noise / (x[:, 1:] + noise + 1e-7)).sum(axis=1))


def test_contrast_loss_and_scores_golden():
  r = np.random.default_rng(0)
  e, bank = _unit(r.normal(size=(B, D))), _unit(r.normal(size=(N, D)))
  idx = r.integers(0, N, (B, K + 1))
  scores = contrastive.contrast_scores(e, bank, idx, 0.07)
  want = np.exp(np.einsum("bkd,bd->bk", bank[idx], e) / 0.07)
  np.testing.assert_allclose(scores, want, rtol=1e-4)
  x = want / (want.mean() * N)
  np.testing.assert_allclose(contrastive.contrast_loss(x, N), np_contrast_loss(x, N),
                             rtol=1e-5)


def test_update_memory_golden_touches_only_the_batch():
  r = np.random.default_rng(1)
  bank, e = _unit(r.normal(size=(N, D))), _unit(r.normal(size=(B, D)))
  idx = np.array([3, 0, 7, 11])
  got = np.asarray(contrastive.update_memory(bank, idx, e, 0.5))
  mixed = 0.5 * bank[idx] + 0.5 * e
  np.testing.assert_allclose(got[idx], _unit(mixed), rtol=1e-5)
  untouched = np.setdiff1d(np.arange(N), idx)
  np.testing.assert_array_equal(got[untouched], bank[untouched].astype(np.float32))


def test_negatives_are_other_classes_and_cover_them_uniformly():
  labels_all = np.array([0] * 6 + [1] * 4 + [2] * 2)
  np.random.default_rng(2).shuffle(labels_all)
  order, starts, counts = contrastive.class_sorted_order(labels_all, 3)
  batch_labels = jnp.array([0, 1, 2, 0])
  neg = np.asarray(contrastive.other_class_indices(jax.random.PRNGKey(0), batch_labels,
                                                   order, starts, counts, 6000))
  assert neg.shape == (4, 6000)
  for row, y in zip(neg, np.asarray(batch_labels)):
    assert not np.any(labels_all[row] == y)
    pool = np.flatnonzero(labels_all != y)
    freq = np.bincount(row, minlength=len(labels_all))[pool] / len(row)
    np.testing.assert_allclose(freq, 1 / len(pool), atol=0.03)


def _outputs(r, num_data):
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  labels = r.integers(0, 3, B)
  return methods.StudentOutputs(
      student_logits=f32(r.normal(size=(B, 3))), student_features=f32(r.normal(size=(B, 4))),
      teacher_features=f32(r.normal(size=(B, 6))), teacher_logits=f32(r.normal(size=(B, 3))),
      labels=jnp.asarray(labels, jnp.int32),
      indices=jnp.asarray(r.choice(num_data, B, replace=False), jnp.int32),
      rng=jax.random.PRNGKey(3))


def test_crd_objective_golden_first_step_and_its_next_state():
  r = np.random.default_rng(4)
  counts = np.array([5, 4, 3])
  labels_all = np.repeat(np.arange(3), counts)
  objective = methods.objective("crd", counts, embed_dim=D, negatives=K,
                                **methods.get("crd").constants(
                                    {}, methods.RunContext(3, 0, None,
                                                           train_labels=labels_all)))
  out = _outputs(r, N)
  shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), out)
  params = objective.init_params(jax.random.PRNGKey(0), shapes)
  state = objective.init_state(jax.random.PRNGKey(1), shapes)
  assert state["memory_s"].shape == (N, D) and float(state["z_s"]) == -1.0
  out = out.replace(params=params, state=state)
  loss, metrics = jax.jit(objective.fn)(out, 1.0)

  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  embed = lambda q, f: _unit(np.asarray(f, np.float64) @ q["kernel"] + q["bias"])
  e_s, e_t = embed(p["embed_s"], out.student_features), embed(p["embed_t"], out.teacher_features)
  order, starts, cls = contrastive.class_sorted_order(labels_all, 3)
  negative = np.asarray(contrastive.other_class_indices(out.rng, out.labels, order, starts,
                                                        cls, K))
  idx = np.concatenate([np.asarray(out.indices)[:, None], negative], axis=1)
  mem_s, mem_t = (np.asarray(state[k], np.float64) for k in ("memory_s", "memory_t"))
  raw_s = np.exp(np.einsum("bkd,bd->bk", mem_t[idx], e_s) / 0.07)
  raw_t = np.exp(np.einsum("bkd,bd->bk", mem_s[idx], e_t) / 0.07)
  z_s, z_t = raw_s.mean() * N, raw_t.mean() * N
  crd = np.mean(np_contrast_loss(raw_s / z_s, N) + np_contrast_loss(raw_t / z_t, N))
  logits = np.asarray(out.student_logits, np.float64)
  log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  ce = -log_p[np.arange(B), np.asarray(out.labels)].mean()
  np.testing.assert_allclose(metrics["crd"], 0.8 * crd, rtol=1e-4)
  np.testing.assert_allclose(loss, ce + 0.8 * crd, rtol=1e-4)

  new = jax.jit(objective.next_state)(out)
  np.testing.assert_allclose(new["z_s"], z_s, rtol=1e-4)
  np.testing.assert_allclose(new["z_t"], z_t, rtol=1e-4)
  batch = np.asarray(out.indices)
  np.testing.assert_allclose(new["memory_s"][batch], _unit(0.5 * mem_s[batch] + 0.5 * e_s),
                             rtol=1e-4, atol=1e-6)
  # The gradient reaches the student's features and both embeddings, not the banks.
  grads = jax.grad(lambda q: objective.fn(out.replace(params=q), 1.0)[0])(params)
  assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads))


def test_crd_refuses_a_streamed_source_before_any_work():
  from krd_jax import validate
  from krd_jax.config import default_config
  cfg = default_config().unlock()
  cfg.student.method = "crd"
  cfg.data.streaming = True
  with pytest.raises(validate.InputError, match="student.method='crd' reads each example's "
                     "index .* config.data.streaming=True gives no stable indices"):
    validate.check_method_inputs(cfg, "crd")


def test_crd_state_is_checkpointed_and_resumes_bitwise(tmp_path):
  """Banks and Z are saved with the student (never through the optimiser: its state has
  no entry for them) and a resume from the epoch-1 checkpoint ends bit-identical."""
  import shutil
  import ml_collections
  from krd_jax import runs
  from krd_jax.experiment import Experiment
  from krd_jax.train import checkpoints as ckpt_lib
  from test_train import _config, _tiny_dataset
  cfg = ml_collections.ConfigDict(_config(tmp_path / "cfg", model="mlp", method="crd",
                                          epochs=2).to_dict())
  cfg.methods.crd.negatives = 16
  cfg = cfg.lock()
  exp = Experiment(cfg, teacher_dir=str(tmp_path / "teacher"), data=_tiny_dataset())
  exp.train_student(cfg, str(tmp_path / "ref"))
  ref = ckpt_lib.RunCheckpoints(str(tmp_path / "ref" / "checkpoints"))
  steps = sorted(ref.manager.all_steps())
  final = ref.manager.restore(steps[-1])["state"]
  ref.close()
  assert set(final["method_state"]) == {"memory_s", "memory_t", "z_s", "z_t"}
  opt_leaves = {jax.tree_util.keystr(p) for p, _ in
                jax.tree_util.tree_flatten_with_path(final["opt_state"])[0]}
  assert not any("memory" in p for p in opt_leaves)

  shutil.copytree(tmp_path / "ref", tmp_path / "resumed")
  (tmp_path / "resumed" / "final.json").unlink()
  shutil.rmtree(tmp_path / "resumed" / "checkpoints" / str(steps[-1]))
  exp.train_student(cfg, str(tmp_path / "resumed"))
  again = ckpt_lib.RunCheckpoints(str(tmp_path / "resumed" / "checkpoints"))
  resumed = again.manager.restore(steps[-1])["state"]
  again.close()
  for key in ("params", "method_state"):
    for x, y in zip(jax.tree.leaves(final[key]), jax.tree.leaves(resumed[key])):
      assert np.asarray(x).tobytes() == np.asarray(y).tobytes(), key


def test_a_next_state_of_another_shape_or_dtype_is_refused_at_trace_time():
  """The step holds a method's next state to its current one's tree, shapes and dtypes
  (chex, at trace time): anything else would recompile and break its checkpoints."""
  import optax
  from krd_jax.methods import base
  from krd_jax.train import state as state_lib
  from krd_jax.train import steps as steps_lib
  from krd_jax.models import create_model
  model = create_model("mlp", 3, width=4)
  variables = state_lib.init_variables(model, (2, 2, 1), jax.random.PRNGKey(0))
  tx = optax.sgd(0.1)
  batch = {"label": jnp.zeros((2,), jnp.int32), "index": jnp.arange(2, dtype=jnp.int32)}
  x = jnp.zeros((2, 2, 2, 1))
  for bad in (lambda s: s.astype(jnp.int32), lambda s: jnp.zeros((3,)),
              lambda s: {"count": s}):
    ce = base.student_ce(np.array([2, 1, 1]))
    objective = base.StudentObjective(
        lambda out, scale: base.total(ce(out), {}, scale), needs_teacher=False,
        init_state=lambda rng, ex: jnp.zeros((2,)), next_state=lambda out, bad=bad: bad(out.state))
    update = steps_lib.make_student_update(model, objective, tx, 0)
    state = state_lib.create_state({"model": variables["params"]}, {}, tx,
                                   method_state=jnp.zeros((2,)))
    with pytest.raises(AssertionError):
      jax.jit(update)(state, x, batch, steps_lib.TeacherOutputs(), jax.random.PRNGKey(0))


def test_contrast_loss_gradient_against_central_differences():
  """d loss / d embedding through the scores, against the float64 reference."""
  r = np.random.default_rng(7)
  e, bank = _unit(r.normal(size=(B, D))), _unit(r.normal(size=(N, D)))
  idx = r.integers(0, N, (B, K + 1))
  z = 3.0  # a fixed normalisation constant (Z is a constant after the first step)

  def reference(x):
    scores = np.exp(np.einsum("bkd,bd->bk", bank[idx], x) / 0.07) / z
    return np_contrast_loss(scores, N).mean()

  got = jax.grad(lambda x: contrastive.contrast_loss(
      contrastive.contrast_scores(x, bank, idx, 0.07) / z, N).mean())(jnp.asarray(e, jnp.float32))
  want = np.zeros_like(e)
  for i in np.ndindex(e.shape):
    up, down = e.copy(), e.copy()
    up[i] += 1e-6
    down[i] -= 1e-6
    want[i] = (reference(up) - reference(down)) / 2e-6
  np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-4 * np.abs(want).max())


def test_seeds_vmapped_carry_each_seeds_banks_as_solo_runs_do(tmp_path):
  """The vmapped seed group threads method state the way a solo run does (one list of a
  member's fields): two CRD seeds in one program end where each ends alone, banks too."""
  import ml_collections
  from krd_jax import runs
  from krd_jax.train import checkpoints as ckpt_lib
  from krd_jax.train import seeds as seeds_lib
  from krd_jax.train import student as student_lib
  from krd_jax.train import teacher as teacher_lib
  from test_train import _config, _tiny_dataset
  ds = _tiny_dataset()
  base = ml_collections.ConfigDict(_config(tmp_path / "cfg", model="mlp", method="crd",
                                           epochs=1).to_dict())
  base.methods.crd.negatives = 16
  cfgs = []
  for seed in (0, 1):
    cfg = ml_collections.ConfigDict(base.to_dict())
    cfg.seed = seed
    cfgs.append(cfg.lock())
  mesh = runs.make_mesh(cfgs[0])
  teacher = teacher_lib.train_teacher(cfgs[0], ds, mesh, str(tmp_path / "teacher"))
  seeds_lib.train_students_parallel(cfgs, ds, mesh, teacher,
                                    [str(tmp_path / f"s{i}") for i in (0, 1)],
                                    str(tmp_path / "group"))

  def latest(run_dir):
    saved = ckpt_lib.RunCheckpoints(str(run_dir / "checkpoints"))
    state = saved.manager.restore(saved.latest_step)["state"]
    saved.close()
    return state

  group = latest(tmp_path / "group")
  for i, cfg in enumerate(cfgs):
    student_lib.train_student(cfg, ds, mesh, teacher, str(tmp_path / f"solo{i}"))
    solo = latest(tmp_path / f"solo{i}")
    for key in ("params", "method_state"):
      for a, b in zip(jax.tree.leaves(seeds_lib.unstack(group[key], i)),
                      jax.tree.leaves(solo[key])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5, err_msg=key)
  assert not np.allclose(group["method_state"]["memory_s"][0],
                         group["method_state"]["memory_s"][1])
