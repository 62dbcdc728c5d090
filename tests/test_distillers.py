"""The field's distillers (AT, PKT, RKD, DIST, logit standardization): each loss against
an independent float64 numpy reference written from the authors' formula, its gradient
against central differences of that reference, its objective's terms, and what each
method declares it reads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from krd_jax import losses
from krd_jax import methods

B, C, H = 6, 5, 4


def _rng(seed):
  return np.random.default_rng(seed)


def _softmax(z):
  e = np.exp(z - z.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def _ce(z, y):
  return -np.log(_softmax(z)[np.arange(len(y)), y])


def _smooth_l1(x):
  a = np.abs(x)
  return np.where(a < 1.0, 0.5 * x * x, a - 0.5)


# ------------------------------------------------------------ float64 references


def np_at(fs, ft, p=2.0):
  """AT per example: maps NHWC; the larger map average-pooled to the smaller."""
  def pool(a, size):
    b, h, w, c = a.shape
    return a.reshape(b, size, h // size, size, w // size, c).mean(axis=(2, 4))
  if fs.shape[1] > ft.shape[1]:
    fs = pool(fs, ft.shape[1])
  if ft.shape[1] > fs.shape[1]:
    ft = pool(ft, fs.shape[1])
  def q(f):
    a = (f ** p).mean(axis=3).reshape(len(f), -1)
    return a / np.linalg.norm(a, axis=1, keepdims=True)
  return ((q(fs) - q(ft)) ** 2).mean(axis=1)


def np_pkt(fs, ft, eps=1e-7):
  def dist(f):
    f = f / (np.linalg.norm(f, axis=1, keepdims=True) + eps)
    s = (f @ f.T + 1) / 2
    return s / s.sum(axis=1, keepdims=True)
  p, q = dist(fs), dist(ft)
  return (q * np.log((q + eps) / (p + eps))).mean(axis=1)


def np_rkd(fs, ft):
  def d(f):
    n = len(f)
    out = np.array([[np.linalg.norm(f[i] - f[j]) for j in range(n)] for i in range(n)])
    return out / out[out > 0].mean()
  def cos(f):
    n = len(f)
    a = np.zeros((n, n, n))
    for j in range(n):
      for i in range(n):
        for k in range(n):
          u, v = f[i] - f[j], f[k] - f[j]
          nu, nv = np.linalg.norm(u), np.linalg.norm(v)
          a[j, i, k] = 0.0 if nu == 0 or nv == 0 else u @ v / (nu * nv)
    return a
  return (_smooth_l1(d(fs) - d(ft)).mean(axis=1),
          _smooth_l1(cos(fs) - cos(ft)).mean(axis=(1, 2)))


def np_dist(zs, zt, t=4.0, beta=1.0, gamma=1.0):
  def rho(a, b):
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-8)
  ys, yt = _softmax(zs / t), _softmax(zt / t)
  return beta * t * t * (1 - rho(ys, yt)), gamma * t * t * (1 - rho(ys.T, yt.T))


def np_standardize(z):
  return (z - z.mean(axis=1, keepdims=True)) / (1e-7 + z.std(axis=1, ddof=1, keepdims=True))


def np_kd(zs, zt, t):
  ps, pt = _softmax(zs / t), _softmax(zt / t)
  return t * t * (pt * (np.log(pt) - np.log(ps))).sum(axis=1)


# ------------------------------------------------------------ losses against references


def _maps(seed, s_hw=8, t_hw=4):
  r = _rng(seed)
  return (np.abs(r.normal(size=(B, s_hw, s_hw, 3))), np.abs(r.normal(size=(B, t_hw, t_hw, 7))))


@pytest.mark.parametrize("sizes", [(8, 4), (4, 8), (4, 4)], ids=["pool-s", "pool-t", "same"])
def test_attention_transfer_golden(sizes):
  fs, ft = _maps(0, *sizes)
  got = losses.attention_transfer_loss(fs, ft)
  assert got.shape == (B,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, np_at(fs, ft), rtol=2e-5, atol=1e-8)
  np.testing.assert_allclose(losses.attention_transfer_loss(ft, ft), 0.0, atol=1e-7)
  with pytest.raises(ValueError, match="multiple"):
    losses.attention_transfer_loss(np.ones((B, 6, 6, 3)), np.ones((B, 4, 4, 3)))


def test_pkt_golden_and_zero_when_relations_match():
  r = _rng(1)
  fs, ft = r.normal(size=(B, 3)), r.normal(size=(B, 9))
  np.testing.assert_allclose(losses.pkt_loss(fs, ft), np_pkt(fs, ft), rtol=1e-4, atol=1e-7)
  # Rotating and scaling the features keeps every cosine: nothing left to transfer.
  rotation = np.linalg.qr(r.normal(size=(9, 9)))[0]
  np.testing.assert_allclose(losses.pkt_loss(3 * ft @ rotation, ft), 0.0, atol=1e-6)


def test_rkd_golden_and_invariant_to_scale():
  r = _rng(2)
  fs, ft = r.normal(size=(B, 3)), r.normal(size=(B, 9))
  distance, angle = np_rkd(fs, ft)
  np.testing.assert_allclose(losses.rkd_distance_loss(fs, ft), distance, rtol=1e-4,
                             atol=1e-7)
  np.testing.assert_allclose(losses.rkd_angle_loss(fs, ft), angle, rtol=1e-4, atol=1e-7)
  for fn in (losses.rkd_distance_loss, losses.rkd_angle_loss):
    np.testing.assert_allclose(fn(5 * ft, ft), 0.0, atol=1e-6)


def test_dist_golden():
  r = _rng(3)
  zs, zt = 3 * r.normal(size=(B, C)), 3 * r.normal(size=(B, C))
  inter, intra = losses.dist_loss(zs, zt, 4.0, 1.0, 2.0)
  ref_inter, ref_intra = np_dist(zs, zt, 4.0, 1.0, 2.0)
  assert inter.shape == (B,) and intra.shape == (C,)
  np.testing.assert_allclose(inter, ref_inter, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(intra, ref_intra, rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="temperature must be > 0"):
    losses.dist_loss(zs, zt, 0.0)


def test_standardize_logits_golden_and_shift_scale_invariant():
  z = 4 * _rng(4).normal(size=(B, C))
  np.testing.assert_allclose(losses.standardize_logits(z), np_standardize(z), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(losses.standardize_logits(3 * z + 7), np_standardize(z),
                             rtol=1e-4, atol=1e-5)


def _numeric_grad(fn, x, eps=1e-6):
  grad = np.zeros_like(x)
  for index in np.ndindex(x.shape):
    up, down = x.copy(), x.copy()
    up[index] += eps
    down[index] -= eps
    grad[index] = (fn(up) - fn(down)) / (2 * eps)
  return grad


GRADIENT_CASES = {
    "at": (lambda s, t: losses.attention_transfer_loss(s, t).mean(),
           lambda s, t: np_at(s, t).mean(), lambda: _maps(5, 4, 4)),
    "pkt": (lambda s, t: losses.pkt_loss(s, t).mean(), lambda s, t: np_pkt(s, t).mean(),
            lambda: (_rng(6).normal(size=(B, 3)), _rng(7).normal(size=(B, 4)))),
    "rkd": (lambda s, t: (25 * losses.rkd_distance_loss(s, t) +
                          50 * losses.rkd_angle_loss(s, t)).mean(),
            lambda s, t: (25 * np_rkd(s, t)[0] + 50 * np_rkd(s, t)[1]).mean(),
            lambda: (_rng(8).normal(size=(B, 3)), _rng(9).normal(size=(B, 4)))),
    "dist": (lambda s, t: sum(x.mean() for x in losses.dist_loss(s, t)),
             lambda s, t: sum(x.mean() for x in np_dist(s, t)),
             lambda: (2 * _rng(10).normal(size=(B, C)), 2 * _rng(11).normal(size=(B, C)))),
    "lskd": (lambda s, t: losses.kd_loss(losses.standardize_logits(s),
                                         losses.standardize_logits(t), 2.0).mean(),
             lambda s, t: np_kd(np_standardize(s), np_standardize(t), 2.0).mean(),
             lambda: (2 * _rng(12).normal(size=(B, C)), 2 * _rng(13).normal(size=(B, C)))),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_gradient_against_central_differences_of_the_reference(name):
  ours, reference, inputs = GRADIENT_CASES[name]
  student, teacher = inputs()
  got = jax.grad(lambda s: ours(s, jnp.asarray(teacher, jnp.float32)))(
      jnp.asarray(student, jnp.float32))
  want = _numeric_grad(lambda s: reference(s, teacher), student)
  np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-5 * np.abs(want).max())


def np_rectify(zt, y, counts):
  """KRDistill's rectified teacher at tau 1: the prior removed, then the label's logit
  swapped with the top one where they differ."""
  z = zt - np.log(counts / counts.sum())
  for i, (label, top) in enumerate(zip(y, z.argmax(1))):
    z[i, label], z[i, top] = z[i, top], z[i, label]
  return z


# ------------------------------------------------------------ objectives and declarations


def _outputs(seed=20):
  r = _rng(seed)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  return dict(zs=3 * r.normal(size=(B, C)), zt=3 * r.normal(size=(B, C)),
              y=r.integers(0, C, B), fs=r.normal(size=(B, 3)), ft=r.normal(size=(B, 4)),
              maps_s={s: np.abs(r.normal(size=(B, 8 // k, 8 // k, 2))) for k, s in
                      ((1, "stage1"), (2, "stage2"), (4, "stage3"))},
              maps_t={s: np.abs(r.normal(size=(B, 8 // k, 8 // k, 3))) for k, s in
                      ((1, "stage1"), (2, "stage2"), (4, "stage3"))}), f32


OBJECTIVE_CASES = {
    "at": ({}, lambda a: {"at": 1000 * sum(np_at(a["maps_s"][s], a["maps_t"][s]).mean()
                                           for s in ("stage1", "stage2", "stage3"))}, 1.0),
    "pkt": ({}, lambda a: {"pkt": 30000 * np_pkt(a["fs"], a["ft"]).mean()}, 1.0),
    "rkd": ({}, lambda a: {"rkd_distance": 25 * np_rkd(a["fs"], a["ft"])[0].mean(),
                           "rkd_angle": 50 * np_rkd(a["fs"], a["ft"])[1].mean()}, 1.0),
    "dist": ({}, lambda a: dict(zip(("dist_inter", "dist_intra"),
                                    (x.mean() for x in np_dist(a["zs"], a["zt"])))), 1.0),
    # KRDistill's relation form: DIST's terms against the rectified teacher (tau 1:
    # z - log prior, then the label swap), plain CE for the student's own term.
    "krd": ({"lrd_form": "relation", "ce": "ce", "tau_from": "fixed"},
            lambda a: {"lrd": sum(x.mean() for x in np_dist(
                a["zs"], np_rectify(a["zt"], a["y"], np.array([30, 20, 10, 5, 2]))))},
            1.0),
    "lskd": ({}, lambda a: {"kd": 9 * np_kd(np_standardize(a["zs"]), np_standardize(a["zt"]),
                                            2.0).mean()}, 0.1),
    "kd": ({"standardize": True, "temperature": 2.0, "kd_weight": 9.0, "ce_weight": 0.1},
           lambda a: {"kd": 9 * np_kd(np_standardize(a["zs"]), np_standardize(a["zt"]),
                                      2.0).mean()}, 0.1),
}


@pytest.mark.parametrize("name", sorted(OBJECTIVE_CASES))
def test_objective_is_ce_plus_its_authors_weighted_terms(name):
  hparams, terms_fn, ce_weight = OBJECTIVE_CASES[name]
  a, f32 = _outputs()
  objective = methods.objective(name, np.array([30, 20, 10, 5, 2]), **hparams)
  out = methods.StudentOutputs(
      student_logits=f32(a["zs"]), student_features=f32(a["fs"]), teacher_logits=f32(a["zt"]),
      teacher_features=f32(a["ft"]), labels=jnp.asarray(a["y"], jnp.int32),
      student_stages=jax.tree.map(f32, a["maps_s"]),
      teacher_stages=jax.tree.map(f32, a["maps_t"]))
  loss, metrics = jax.jit(objective.fn)(out, 0.5)
  terms = terms_fn(a)
  ce = ce_weight * _ce(a["zs"], a["y"]).mean()
  for key, value in terms.items():
    np.testing.assert_allclose(metrics[key], 0.5 * value, rtol=2e-4)
  np.testing.assert_allclose(loss, ce + 0.5 * sum(terms.values()), rtol=2e-4)


def test_what_each_distiller_declares_it_reads():
  reads = {name: methods.get(name).reads({}) for name in ("at", "pkt", "rkd", "dist", "lskd")}
  assert reads["at"] == {"student": ("stage1", "stage2", "stage3"),
                         "teacher": ("stage1", "stage2", "stage3"), "indices": False}
  for name in ("pkt", "rkd", "dist", "lskd"):
    assert reads[name] == {"student": (), "teacher": (), "indices": False}


def test_a_stage_map_method_with_an_mlp_is_refused_before_any_work(tmp_path, capsys):
  from krd_jax import __main__ as cli_lib
  rc = cli_lib.cli(["krd_jax", "student", "--config=digits_lt:local",
                    f"--config.workdir={tmp_path / 'w'}", "--config.student.method=at"])
  assert rc == cli_lib.EXIT_BAD_INPUT
  err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
  assert len(err) == 1 and "student.method='at' reads the student's stage maps " \
      "['stage1', 'stage2', 'stage3'], and config.student.model='mlp' offers none" in err[0]
  assert not (tmp_path / "w").exists()


def test_ctkd_kd_at_its_learned_temperature_with_the_gradient_reversed():
  """The temperature is 1 + 20 sigmoid(theta); the KD term is KD at that temperature; the
  gradient reaching theta is lambda times the true one, lambda following the authors'
  cosine from 0 to -1 over 10 epochs counted from 1."""
  from krd_jax.methods import ctkd
  r = _rng(30)
  zs, zt, y = 3 * r.normal(size=(B, C)), 3 * r.normal(size=(B, C)), r.integers(0, C, B)
  objective = methods.objective("ctkd", np.array([30, 20, 10, 5, 2]), steps_per_epoch=4)
  theta, step = 0.3, 9  # epoch 3 of 10: lambda = (cos(3 pi / 10) + 1) / 2 - 1
  lam = (np.cos(3 * np.pi / 10) + 1) / 2 - 1
  t = 1 + 20 / (1 + np.exp(-theta))

  def run(th):
    out = methods.StudentOutputs(
        student_logits=jnp.asarray(zs, jnp.float32), teacher_logits=jnp.asarray(zt, jnp.float32),
        labels=jnp.asarray(y, jnp.int32), params={"theta": th}, step=jnp.int32(step))
    return objective.fn(out, 1.0)

  loss, metrics = run(jnp.float32(theta))
  np.testing.assert_allclose(metrics["temperature"], t, rtol=1e-6)
  np.testing.assert_allclose(metrics["kd"], 0.9 * np_kd(zs, zt, t).mean(), rtol=1e-4)
  np.testing.assert_allclose(loss, 0.1 * _ce(zs, y).mean() + 0.9 * np_kd(zs, zt, t).mean(),
                             rtol=1e-4)
  true = _numeric_grad(lambda th: 0.9 * np_kd(zs, zt, 1 + 20 / (1 + np.exp(-th[0]))).mean(),
                       np.array([theta]))[0]
  got = jax.grad(lambda th: run(th)[0])(jnp.float32(theta))
  np.testing.assert_allclose(got, lam * true, rtol=1e-3)
  np.testing.assert_allclose(ctkd.reversal_factor(0, 4, 10, 0.0, -1.0),
                             (np.cos(np.pi / 10) + 1) / 2 - 1, rtol=1e-6)
  np.testing.assert_allclose(ctkd.reversal_factor(400, 4, 10, 0.0, -1.0), -1.0)
