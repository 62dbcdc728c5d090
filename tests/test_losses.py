"""Tests for krd_jax.losses.

Golden values come from the float64 numpy references below, written from the
papers (and mdistiller / LDAM-DRW / BKD code for conventions) without calling
krd_jax; the only krd_jax values they share are random inputs (ETF anchors).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from krd_jax import losses
from krd_jax import methods
from krd_jax import priors

RTOL, ATOL = 1e-5, 1e-6
SHAPES = [(8, 10, 16), (32, 100, 64)]  # (batch, classes, teacher feature dim)
SEEDS = [0, 1, 2]

# ----------------------------------------------------- numpy references


def np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_softmax(x):
  return np.exp(np_log_softmax(x))


def np_kl(p, log_q):
  """KL(p || q) per row, with 0 log 0 = 0."""
  safe_p = np.where(p > 0, p, 1.0)
  return np.sum(np.where(p > 0, p * (np.log(safe_p) - log_q), 0.0), -1)


def np_ce(logits, y):
  return -np_log_softmax(logits)[np.arange(len(y)), y]


def np_normalize(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def np_onehot(y, c):
  return np.eye(c)[y]


def np_prior(counts):
  n = np.asarray(counts, np.float64)
  return n / n.sum()


def np_effective_number(counts, beta=0.9999):
  n = np.asarray(counts, np.float64)
  w = (1 - beta) / (1 - beta**n)
  return w / w.sum() * len(n)


def ref_kd(s, t, temp):
  return temp**2 * np_kl(np_softmax(t / temp), np_log_softmax(s / temp))


def ref_dkd(s, t, y, alpha, beta, temp):
  """mdistiller's dkd_loss, per example."""
  gt = np_onehot(y, s.shape[1])
  p_s, p_t = np_softmax(s / temp), np_softmax(t / temp)
  b_s = np.stack([(p_s * gt).sum(1), (p_s * (1 - gt)).sum(1)], 1)
  b_t = np.stack([(p_t * gt).sum(1), (p_t * (1 - gt)).sum(1)], 1)
  tckd = np_kl(b_t, np.log(b_s))
  nckd = np_kl(np_softmax(t / temp - 1000.0 * gt),
               np_log_softmax(s / temp - 1000.0 * gt))
  return temp**2 * (alpha * tckd + beta * nckd)


def ref_bkd(s, t, w, temp):
  q = np_softmax(t / temp) * w
  q /= q.sum(1, keepdims=True)
  return temp**2 * np_kl(q, np_log_softmax(s / temp))


def np_terciles(counts):
  """[C] group index 0 / 1 / 2 (head / middle / tail): classes ranked by count, cut
  like np.array_split (extra classes to the head first)."""
  ranking = np.argsort(-np.asarray(counts), kind="stable")
  groups = np.empty(len(counts), int)
  for g, members in enumerate(np.array_split(ranking, 3)):
    groups[members] = g
  return groups


def ref_ltkd(s, t, counts, temp, group_tau, alpha, beta, within, rebalance="batch"):
  """LTKD computed class by class in float64: the cross-group target rebalanced over
  the batch (each group's batch-mean teacher probability divided out) or by the
  training group prior."""
  groups = np_terciles(counts)
  p, q = np_softmax(t / temp), np_softmax(s / temp)
  num_groups = groups.max() + 1
  big_p = np.stack([p[:, groups == g].sum(1) for g in range(num_groups)], 1)
  big_q = np.stack([q[:, groups == g].sum(1) for g in range(num_groups)], 1)
  share = np.array([counts[groups == g].sum() for g in range(num_groups)]) / counts.sum()
  if rebalance == "batch":
    target = big_p / big_p.mean(0, keepdims=True)
  else:
    target = big_p * share**-group_tau
  target /= target.sum(1, keepdims=True)
  cross = np_kl(target, np.log(big_q))
  inner = np.stack([np_kl(p[:, groups == g] / big_p[:, g:g + 1],
                          np.log(q[:, groups == g] / big_q[:, g:g + 1]))
                    for g in range(num_groups)], 1)
  weights = big_p if within == "teacher" else np.full_like(big_p, 1 / num_groups)
  return temp**2 * (alpha * cross + beta * (weights * inner).sum(1))


def ref_ldam(z, y, margins, scale):
  """LDAM-DRW's LDAMLoss: subtract m_y from the true logit, scale, CE."""
  out = z - np_onehot(y, z.shape[1]) * margins[y][:, None]
  return np_ce(scale * out, y)


def ref_rectify(t, y, counts, tau, swap):
  z = t - tau * np.log(np_prior(counts))
  if swap:
    for i, (label, top) in enumerate(zip(y, z.argmax(1))):
      z[i, label], z[i, top] = z[i, top], z[i, label]
  return z


def ref_rectify_features(h, y, anchors, center, lam):
  x = np.zeros((h.shape[0], anchors.shape[0]))
  x[:, :h.shape[1]] = h - center
  return np_normalize((1 - lam) * np_normalize(x) + lam * anchors[:, y].T)


def ref_rrd(g, h, y, anchors, center, lam):
  target = ref_rectify_features(h, y, anchors, center, lam)
  return np.sum((np_normalize(g) - target)**2, -1)


def ref_balanced_mean(loss, y, class_weights=None, where=None):
  w = np.ones_like(loss) if class_weights is None else class_weights[y]
  if where is not None:
    w = w * where
    loss = np.where(where, loss, 0.0)
  return np.sum(w * loss) / np.sum(w)


# ------------------------------------------------------------- inputs


def long_tail_counts(num_classes, n_max=500, imbalance=100):
  i = np.arange(num_classes)
  return (n_max * imbalance ** (-i / (num_classes - 1))).astype(int)


@functools.lru_cache(maxsize=None)
def make_inputs(seed, batch, num_classes, dim, scale=3.0):
  """float32 arrays (dict, a pytree) and the class counts of one test case."""
  rng = np.random.default_rng(seed)
  big_d = max(dim, num_classes)
  f32 = lambda a: np.asarray(a, np.float32)
  arrays = dict(
      s=f32(scale * rng.normal(size=(batch, num_classes))),
      t=f32(scale * rng.normal(size=(batch, num_classes))),
      y=rng.integers(0, num_classes, batch).astype(np.int32),
      h=f32(rng.normal(size=(batch, dim)) + 1.0),
      g=f32(rng.normal(size=(batch, big_d))),
      anchors=priors.simplex_etf(num_classes, dim, seed=seed),
      center=f32(rng.normal(size=dim)),
      mask=rng.random(batch) < 0.7,
  )
  arrays["mask"][0] = True
  # The student's features and the linear projector a method owns (KRDistill's g).
  arrays.update(f=f32(rng.normal(size=(batch, dim + 1))),
                kernel=f32(rng.normal(size=(dim + 1, big_d)) / np.sqrt(dim + 1)),
                bias=f32(0.1 * rng.normal(size=big_d)))
  return arrays, long_tail_counts(num_classes)


def f64(arrays):
  return {k: (np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f"
              else np.asarray(v)) for k, v in arrays.items()}


# Each case: (krd_jax call, numpy reference), both f(arrays, counts).
# The krd_jax side builds its per-class constants with krd_jax.priors; the
# reference rebuilds them from the counts.
CASES = {
    "kd": (lambda a, n: losses.kd_loss(a["s"], a["t"], 4.0),
           lambda a, n: ref_kd(a["s"], a["t"], 4.0)),
    "kd_t1": (lambda a, n: losses.kd_loss(a["s"], a["t"], 1.0),
              lambda a, n: ref_kd(a["s"], a["t"], 1.0)),
    "dkd": (lambda a, n: losses.dkd_loss(a["s"], a["t"], a["y"], 1.0, 8.0, 4.0),
            lambda a, n: ref_dkd(a["s"], a["t"], a["y"], 1.0, 8.0, 4.0)),
    "dkd_t2": (
        lambda a, n: losses.dkd_loss(a["s"], a["t"], a["y"], 0.5, 2.0, 2.0),
        lambda a, n: ref_dkd(a["s"], a["t"], a["y"], 0.5, 2.0, 2.0)),
    "bkd": (lambda a, n: losses.bkd_loss(
        a["s"], a["t"], priors.effective_number_weights(n), 4.0),
            lambda a, n: ref_bkd(a["s"], a["t"], np_effective_number(n), 4.0)),
    "ltkd": (lambda a, n: losses.ltkd_loss(
        a["s"], a["t"], priors.group_matrix(n),
        priors.log_group_prior(n, priors.group_matrix(n))),
             lambda a, n: ref_ltkd(a["s"], a["t"], n, 4.0, 1.0, 1.0, 1.0, "uniform")),
    "ltkd_prior": (lambda a, n: losses.ltkd_loss(
        a["s"], a["t"], priors.group_matrix(n),
        priors.log_group_prior(n, priors.group_matrix(n)), rebalance="prior"),
                   lambda a, n: ref_ltkd(a["s"], a["t"], n, 4.0, 1.0, 1.0, 1.0, "uniform",
                                         "prior")),
    "ltkd_teacher_weights": (lambda a, n: losses.ltkd_loss(
        a["s"], a["t"], priors.group_matrix(n),
        priors.log_group_prior(n, priors.group_matrix(n)), temperature=2.0,
        group_tau=0.5, alpha=0.5, beta=2.0, within="teacher", rebalance="prior"),
             lambda a, n: ref_ltkd(a["s"], a["t"], n, 2.0, 0.5, 0.5, 2.0, "teacher",
                                   "prior")),
    "cross_entropy": (lambda a, n: losses.cross_entropy(a["s"], a["y"]),
                      lambda a, n: np_ce(a["s"], a["y"])),
    "class_balanced_ce": (
        lambda a, n: losses.class_balanced_ce(
            a["s"], a["y"], priors.effective_number_weights(n)),
        lambda a, n: np_effective_number(n)[a["y"]] * np_ce(a["s"], a["y"])),
    "ldam": (lambda a, n: losses.ldam_loss(a["s"], a["y"],
                                           priors.ldam_margins(n), 30.0),
             lambda a, n: ref_ldam(a["s"], a["y"],
                                   0.5 * (n / n.min())**-0.25, 30.0)),
    "logit_adjusted": (
        lambda a, n: losses.logit_adjusted_ce(a["s"], a["y"],
                                              priors.log_prior(n), 0.5),
        lambda a, n: np_ce(a["s"] + 0.5 * np.log(np_prior(n)), a["y"])),
    "balanced_softmax": (
        lambda a, n: losses.balanced_softmax_ce(a["s"], a["y"],
                                                priors.log_prior(n)),
        lambda a, n: np_ce(a["s"] + np.log(n), a["y"])),
    "rectify_teacher_logits": (
        lambda a, n: losses.rectify_teacher_logits(a["t"], a["y"],
                                                   priors.log_prior(n)),
        lambda a, n: ref_rectify(a["t"], a["y"], n, 1.0, True)),
    "rectify_teacher_logits_no_swap": (
        lambda a, n: losses.rectify_teacher_logits(
            a["t"], a["y"], priors.log_prior(n), 0.7, swap=False),
        lambda a, n: ref_rectify(a["t"], a["y"], n, 0.7, False)),
    "logit_rectified_loss": (
        lambda a, n: losses.logit_rectified_loss(
            a["s"], a["t"], a["y"], priors.log_prior(n)),
        lambda a, n: ref_kd(a["s"], ref_rectify(a["t"], a["y"], n, 1.0, True),
                            4.0)),
    "logit_rectified_loss_no_swap": (
        lambda a, n: losses.logit_rectified_loss(
            a["s"], a["t"], a["y"], priors.log_prior(n), tau=0.5,
            temperature=2.0, swap=False),
        lambda a, n: ref_kd(a["s"], ref_rectify(a["t"], a["y"], n, 0.5, False),
                            2.0)),
    # DKD's decoupling of the rectified teacher (TCKD + nckd_weight NCKD).
    "logit_rectified_loss_decoupled": (
        lambda a, n: losses.logit_rectified_loss(
            a["s"], a["t"], a["y"], priors.log_prior(n), tau=0.5,
            temperature=2.0, nckd_weight=3.0),
        lambda a, n: ref_dkd(a["s"], ref_rectify(a["t"], a["y"], n, 0.5, True),
                             a["y"], 1.0, 3.0, 2.0)),
    # Only the target-vs-rest term rectified; NCKD from the teacher as it is.
    "logit_rectified_loss_target": (
        lambda a, n: losses.logit_rectified_loss(
            a["s"], a["t"], a["y"], priors.log_prior(n), tau=0.5,
            temperature=2.0, nckd_weight=3.0, rectify_non_target=False),
        lambda a, n: (ref_dkd(a["s"], ref_rectify(a["t"], a["y"], n, 0.5, True),
                              a["y"], 1.0, 0.0, 2.0) +
                      ref_dkd(a["s"], a["t"], a["y"], 0.0, 3.0, 2.0))),
    "rectify_teacher_features": (
        lambda a, n: losses.rectify_teacher_features(
            a["h"], a["y"], a["anchors"], a["center"], 0.3),
        lambda a, n: ref_rectify_features(a["h"], a["y"], a["anchors"],
                                          a["center"], 0.3)),
    "representation_rectified_loss": (
        lambda a, n: losses.representation_rectified_loss(
            a["g"], a["h"], a["y"], a["anchors"], a["center"], 0.5),
        lambda a, n: ref_rrd(a["g"], a["h"], a["y"], a["anchors"], a["center"],
                             0.5)),
    "balanced_mean": (
        lambda a, n: losses.balanced_mean(
            losses.cross_entropy(a["s"], a["y"]), a["y"],
            priors.balance_weights(n, 1.0), where=a["mask"]),
        lambda a, n: ref_balanced_mean(np_ce(a["s"], a["y"]), a["y"],
                                       1.0 / np_prior(n), a["mask"])),
}
# LDAM scales logits by 30 (to ~300): where its CE is near zero, float32 can
# resolve it only to a few ulp of those logits (~3e-5), whatever the method.
CASE_ATOL = {"ldam": 1e-4}
# Outputs that are rectified logits or features, not losses: no sign to check.
NON_LOSSES = {"rectify_teacher_logits", "rectify_teacher_logits_no_swap",
              "rectify_teacher_features"}
FLOAT_KEYS = ("s", "t", "h", "g")


def run_case(name, arrays, counts):
  return CASES[name][0](arrays, counts)


def reference(name, arrays, counts):
  return CASES[name][1](f64(arrays), counts)


def assert_matches_reference(name, out, arrays, counts):
  np.testing.assert_allclose(out, reference(name, arrays, counts), rtol=RTOL,
                             atol=CASE_ATOL.get(name, ATOL))


# -------------------------------------------------------- golden values


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"C{s[1]}")
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name, seed, shape):
  arrays, counts = make_inputs(seed, *shape)
  out = run_case(name, arrays, counts)
  assert out.dtype == jnp.float32
  assert_matches_reference(name, out, arrays, counts)


# ------------------------------------------------- jit / vmap / grad safety


class JitVmapTest(chex.TestCase):
  """vmap over a stack of batches, with and without jit, matches numpy.

  Each variant must reproduce the float64 reference for every stacked batch:
  jit and eager agree, vmap adds a leading axis without mixing batches, and
  the trace-time checks accept the traced shapes.
  """

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*[(n, n) for n in sorted(CASES)])
  def test_vmapped_variant_matches_reference(self, name):
    cases = [make_inputs(seed, *SHAPES[0]) for seed in SEEDS]
    counts = cases[0][1]
    stacked = jax.tree.map(lambda *x: np.stack(x), *[a for a, _ in cases])
    fn = self.variant(jax.vmap(lambda a: run_case(name, a, counts)))
    out = fn(stacked)
    for i, (arrays, _) in enumerate(cases):
      assert_matches_reference(name, out[i], arrays, counts)


def _scaled(arrays, scale, dtype=np.float32):
  out = dict(arrays)
  for k in FLOAT_KEYS:
    out[k] = jnp.asarray(arrays[k] * scale, dtype)
  return out


@pytest.mark.parametrize("magnitude, dtype", [(1e4, jnp.float32),
                                              (1.0, jnp.bfloat16)],
                         ids=["huge_logits", "bf16"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_finite_gradients(name, magnitude, dtype):
  arrays, counts = make_inputs(0, *SHAPES[1])
  inputs = _scaled(arrays, magnitude / 3.0, dtype)

  def total(floats):
    return jnp.sum(run_case(name, {**inputs, **floats}, counts))

  floats = {k: inputs[k] for k in FLOAT_KEYS}
  value, grads = jax.value_and_grad(total)(floats)
  assert np.isfinite(value)
  for k, grad in grads.items():
    assert grad.dtype == dtype, k
    assert np.all(np.isfinite(np.asarray(grad, np.float32))), k


@pytest.mark.parametrize("name", sorted(CASES))
def test_bf16_inputs_computed_in_float32(name):
  """bf16 in, float32 out, matching float64 on the bf16-rounded inputs."""
  arrays, counts = make_inputs(1, *SHAPES[0])
  bf16 = _scaled(arrays, 1.0, jnp.bfloat16)
  out = run_case(name, bf16, counts)
  assert out.dtype == jnp.float32
  rounded = {k: np.asarray(bf16[k], np.float32) for k in FLOAT_KEYS}
  assert_matches_reference(name, out, {**arrays, **rounded}, counts)


# ------------------------------------------------------------ invariants


@pytest.mark.parametrize("name", sorted(set(CASES) - NON_LOSSES))
def test_non_negative(name):
  arrays, counts = make_inputs(3, *SHAPES[1], scale=10.0)
  assert np.all(np.asarray(run_case(name, arrays, counts)) >= -1e-5)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kd_zero_for_equal_logits_and_shift_invariant(temperature):
  arrays, _ = make_inputs(0, *SHAPES[1])
  s, t = arrays["s"], arrays["t"]
  np.testing.assert_array_equal(losses.kd_loss(s, s, temperature), 0.0)
  shift = np.random.default_rng(0).normal(size=(s.shape[0], 1)) * 3
  np.testing.assert_allclose(losses.kd_loss(s + shift, t - shift, temperature),
                             losses.kd_loss(s, t, temperature), rtol=1e-5)


@pytest.mark.parametrize("swap", [True, False])
def test_lrd_zero_when_student_is_rectified_teacher(swap):
  arrays, counts = make_inputs(0, *SHAPES[1])
  lp = priors.log_prior(counts)
  rect = losses.rectify_teacher_logits(arrays["t"], arrays["y"], lp, swap=swap)
  np.testing.assert_array_equal(
      losses.logit_rectified_loss(rect, arrays["t"], arrays["y"], lp,
                                  swap=swap), 0.0)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"C{s[1]}")
def test_swap_makes_label_argmax_and_keeps_other_entries(shape):
  arrays, counts = make_inputs(0, *shape)
  t, y, lp = arrays["t"], arrays["y"], priors.log_prior(counts)
  plain = np.asarray(losses.rectify_teacher_logits(t, y, lp, swap=False))
  rect = np.asarray(losses.rectify_teacher_logits(t, y, lp, swap=True))
  np.testing.assert_array_equal(rect.argmax(1), y)
  top = plain.argmax(1)
  assert np.any(top != y), "inputs should exercise the swap"
  rows = np.arange(len(y))
  np.testing.assert_array_equal(rect[rows, y], plain[rows, top])
  np.testing.assert_array_equal(rect[rows, top], plain[rows, y])
  untouched = np.ones_like(rect, bool)
  untouched[rows, y] = untouched[rows, top] = False
  np.testing.assert_array_equal(rect[untouched], plain[untouched])


def test_uniform_counts_make_priors_identity():
  arrays, _ = make_inputs(0, *SHAPES[0])
  s, t, y = arrays["s"], arrays["t"], arrays["y"]
  counts = np.full(s.shape[1], 50)
  lp = priors.log_prior(counts)
  shift = losses.rectify_teacher_logits(t, y, lp, swap=False) - t
  np.testing.assert_allclose(shift, np.log(s.shape[1]), rtol=1e-6)
  np.testing.assert_allclose(
      losses.logit_rectified_loss(s, t, y, lp, swap=False),
      losses.kd_loss(s, t), rtol=1e-5)
  np.testing.assert_allclose(losses.logit_adjusted_ce(s, y, lp),
                             losses.cross_entropy(s, y), rtol=1e-5)
  ce = losses.cross_entropy(s, y)
  np.testing.assert_allclose(
      losses.balanced_mean(ce, y, priors.balance_weights(counts, 1.0)),
      jnp.mean(ce), rtol=1e-6)


def test_dkd_decomposes_kd():
  """Zhao et al. Eq. (7): KD = TCKD + (1 - p_t^T) NCKD, per example."""
  arrays, _ = make_inputs(0, *SHAPES[1])
  s, t, y = arrays["s"], arrays["t"], arrays["y"]
  tckd = losses.dkd_loss(s, t, y, alpha=1.0, beta=0.0)
  nckd = losses.dkd_loss(s, t, y, alpha=0.0, beta=1.0)
  p_target = np_softmax(t / 4.0)[np.arange(len(y)), y]
  np.testing.assert_allclose(losses.kd_loss(s, t), tckd + (1 - p_target) * nckd,
                             rtol=1e-5)


@pytest.mark.parametrize("margin", [50.0, 5e3])
def test_dkd_gradients_stay_finite_when_the_teachers_target_dominates(margin):
  """A teacher right by a wide margin (a confident one, or KRDistill's rectified one):
  exp() of its target logit over the non-target logsumexp once overflowed inside NCKD's
  masked-out entry, and the student's gradient came back NaN at margins over ~88 T."""
  arrays, _ = make_inputs(0, *SHAPES[1])
  s, y = arrays["s"], arrays["y"]
  t = arrays["t"] + margin * np.eye(s.shape[1], dtype=np.float32)[y]
  for alpha, beta in ((1.0, 0.0), (0.0, 1.0), (1.0, 8.0)):
    value, grad = jax.value_and_grad(
        lambda s: jnp.sum(losses.dkd_loss(s, t, y, alpha, beta, 4.0)))(s)
    assert np.isfinite(value) and np.all(np.isfinite(grad)), (alpha, beta)
  if margin < 1000.0:  # the reference masks by subtracting 1000 (mdistiller's way)
    a = f64({"s": s, "t": t})
    np.testing.assert_allclose(losses.dkd_loss(s, t, y, 1.0, 8.0, 4.0),
                               ref_dkd(a["s"], a["t"], y, 1.0, 8.0, 4.0), rtol=RTOL,
                               atol=1e-4)


def test_decoupled_lrd_is_kl_where_the_non_target_weight_is_one_minus_p_target():
  """KL = TCKD + (1 - p~_t) NCKD on the rectified teacher (Zhao et al. Eq. 7): the
  decoupled LRD's two terms recombine into the plain one."""
  arrays, counts = make_inputs(0, *SHAPES[1])
  s, t, y = arrays["s"], arrays["t"], arrays["y"]
  lp = priors.log_prior(counts)
  tckd = losses.logit_rectified_loss(s, t, y, lp, nckd_weight=0.0)
  nckd = losses.logit_rectified_loss(s, t, y, lp, nckd_weight=1.0) - tckd
  rect = np.asarray(losses.rectify_teacher_logits(t, y, lp), np.float64)
  p_target = np_softmax(rect / 4.0)[np.arange(len(y)), y]
  np.testing.assert_allclose(losses.logit_rectified_loss(s, t, y, lp),
                             tckd + (1 - p_target) * nckd, rtol=1e-4, atol=1e-5)


def test_target_only_lrd_keeps_the_teachers_non_target_distribution():
  """lrd_form="target": whatever the prior correction (tau) and the swap do to the
  teacher, the non-target term is DKD's NCKD of the teacher's own logits; the target
  term is the decoupled form's."""
  arrays, counts = make_inputs(0, *SHAPES[1])
  s, t, y = arrays["s"], arrays["t"], arrays["y"]
  lp = priors.log_prior(counts)
  raw_nckd = losses.dkd_loss(s, t, y, 0.0, 1.0, 4.0)
  for tau, swap in ((0.0, False), (1.0, True), (2.0, True)):
    tckd = losses.logit_rectified_loss(s, t, y, lp, tau=tau, swap=swap, nckd_weight=0.0)
    for w in (1.0, 4.0):
      got = losses.logit_rectified_loss(s, t, y, lp, tau=tau, swap=swap, nckd_weight=w,
                                        rectify_non_target=False)
      np.testing.assert_allclose(got, tckd + w * raw_nckd, rtol=1e-5, atol=1e-6)
  # With nothing rectified (tau 0, no swap) it is the decoupled form itself.
  np.testing.assert_allclose(
      losses.logit_rectified_loss(s, t, y, lp, tau=0.0, swap=False, nckd_weight=2.0,
                                  rectify_non_target=False),
      losses.logit_rectified_loss(s, t, y, lp, tau=0.0, swap=False, nckd_weight=2.0),
      rtol=1e-5, atol=1e-6)


def test_relation_lrd_golden_and_zero_at_the_rectified_teacher():
  """lrd_form="relation": DIST's Pearson terms between the student's tempered softmax and
  the rectified teacher's, against float64 numpy; zero where the student's logits are the
  rectified teacher's up to a shift per row; DIST itself with nothing rectified."""
  arrays, counts = make_inputs(0, *SHAPES[1])
  s, t, y = arrays["s"], arrays["t"], arrays["y"]
  lp = priors.log_prior(counts)

  def pearson(a, b):  # rows of a against rows of b
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))

  for tau, swap, temperature in ((1.0, True, 4.0), (0.5, False, 2.0)):
    inter, intra = losses.logit_rectified_relation_loss(s, t, y, lp, tau, temperature, swap)
    ps = np_softmax(np.asarray(s, np.float64) / temperature)
    pt = np_softmax(ref_rectify(np.asarray(t, np.float64), y, counts, tau, swap) /
                    temperature)
    np.testing.assert_allclose(inter, temperature**2 * (1 - pearson(ps, pt)),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(intra, temperature**2 * (1 - pearson(ps.T, pt.T)),
                               rtol=1e-4, atol=1e-5)
  rectified = losses.rectify_teacher_logits(t, y, lp)
  for term in losses.logit_rectified_relation_loss(rectified + 3.0, t, y, lp):
    # T^2 = 16 times 1 - rho, rho of 100 float32 probabilities: about 1e-4 off 1.
    np.testing.assert_allclose(term, 0.0, atol=2e-3)
  for got, want in zip(losses.logit_rectified_relation_loss(s, t, y, lp, 0.0, 4.0, False),
                       losses.dist_loss(s, t, 4.0)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_baseline_special_cases():
  arrays, counts = make_inputs(0, *SHAPES[1])
  s, t, y = arrays["s"], arrays["t"], arrays["y"]
  num_classes = s.shape[1]
  ce = losses.cross_entropy(s, y)
  np.testing.assert_allclose(losses.bkd_loss(s, t, np.full(num_classes, 3.0)),
                             losses.kd_loss(s, t), rtol=1e-5)
  np.testing.assert_allclose(
      losses.ldam_loss(s, y, np.zeros(num_classes), scale=1.0), ce, rtol=1e-6)
  np.testing.assert_allclose(
      losses.balanced_softmax_ce(s, y, np.log(counts).astype(np.float32)),
      losses.logit_adjusted_ce(s, y, priors.log_prior(counts)), rtol=1e-5)
  np.testing.assert_allclose(
      losses.class_balanced_ce(s, y, np.ones(num_classes)), ce, rtol=1e-6)


def test_rectified_features_endpoints():
  arrays, _ = make_inputs(0, *SHAPES[1])
  h, y, anchors, center = (arrays[k] for k in ("h", "y", "anchors", "center"))
  lam0 = losses.rectify_teacher_features(h, y, anchors, center, 0.0)
  direction = np_normalize(losses.pad_features(h - center, anchors.shape[0]))
  np.testing.assert_allclose(lam0, direction, atol=1e-6)
  lam1 = losses.rectify_teacher_features(h, y, anchors, center, 1.0)
  np.testing.assert_allclose(lam1, anchors[:, y].T, atol=1e-6)
  mid = losses.rectify_teacher_features(h, y, anchors, center, 0.5)
  np.testing.assert_allclose(np.linalg.norm(mid, axis=1), 1.0, rtol=1e-6)
  rrd = losses.representation_rectified_loss(3.0 * mid, h, y, anchors, center,
                                             0.5)
  np.testing.assert_allclose(rrd, 0.0, atol=1e-6)


def test_balanced_mean_edge_cases():
  loss = jnp.array([1.0, 2.0, np.nan, 4.0])
  y = jnp.array([0, 1, 1, 0])
  where = jnp.array([True, True, False, True])
  np.testing.assert_allclose(losses.balanced_mean(loss, y, where=where), 7 / 3)
  w = jnp.array([1.0, 3.0])
  np.testing.assert_allclose(losses.balanced_mean(loss, y, w, where),
                             (1 + 6 + 4) / 5)
  np.testing.assert_allclose(losses.balanced_mean(loss, y, 10 * w, where),
                             (1 + 6 + 4) / 5, rtol=1e-6)
  assert losses.balanced_mean(loss, y, where=jnp.zeros(4, bool)) == 0.0
  np.testing.assert_allclose(losses.balanced_mean(loss[:2], y[:2]), 1.5)


@pytest.mark.parametrize("step, warmup, expected", [
    (0, 10, 0.0), (5, 10, 0.5), (10, 10, 1.0), (25, 10, 1.0), (-3, 10, 0.0),
    (0, 0, 1.0), (7, 0, 1.0)])
def test_warmup_scale(step, warmup, expected):
  assert losses.warmup_scale(step, warmup) == pytest.approx(expected)
  assert jax.jit(losses.warmup_scale)(step, warmup) == pytest.approx(expected)


# ------------------------------------------------------------ bad input


B, C, D = 4, 5, 8
_s, _y = np.zeros((B, C), np.float32), np.zeros(B, np.int32)
_h, _g = np.zeros((B, 3), np.float32), np.zeros((B, D), np.float32)
_anchors, _center = np.zeros((D, C), np.float32), np.zeros(3, np.float32)

BAD_INPUTS = {
    "kd_teacher_shape": (losses.kd_loss, (_s, _s[:, :-1]), "teacher_logits"),
    "kd_student_rank": (losses.kd_loss, (_s[0], _s[0]), "student_logits"),
    "dkd_labels_batch": (losses.dkd_loss, (_s, _s, _y[:-1]), "labels"),
    "dkd_labels_float": (losses.dkd_loss, (_s, _s, _s[:, 0]), "labels"),
    "bkd_weights": (losses.bkd_loss, (_s, _s, np.ones(C + 1)),
                    "class_weights"),
    "ltkd_groups_rows": (losses.ltkd_loss, (_s, _s, np.eye(C + 1, 3), np.zeros(3)),
                         "group_matrix"),
    "ltkd_group_prior": (losses.ltkd_loss, (_s, _s, np.eye(C, 3), np.zeros(2)),
                         "log_group_prior"),
    "ltkd_teacher_shape": (losses.ltkd_loss, (_s, _s[:, :-1], np.eye(C, 3), np.zeros(3)),
                           "teacher_logits"),
    "ce_labels_rank": (losses.cross_entropy, (_s, _s.astype(np.int32)),
                       "labels"),
    "ce_integer_logits": (losses.cross_entropy, (_s.astype(np.int32), _y),
                          "logits"),
    "cb_weights": (losses.class_balanced_ce, (_s, _y, np.ones((C, 1))),
                   "class_weights"),
    "ldam_margins": (losses.ldam_loss, (_s, _y, np.ones(C - 1)), "margins"),
    "la_prior": (losses.logit_adjusted_ce, (_s, _y, np.ones(C + 2)),
                 "log_prior"),
    "rectify_prior": (losses.rectify_teacher_logits, (_s, _y, np.ones(2)),
                      "log_prior"),
    "lrd_teacher": (losses.logit_rectified_loss,
                    (_s, _s[:2], _y, np.ones(C)), "teacher_logits"),
    "features_center": (losses.rectify_teacher_features,
                        (_h, _y, _anchors, np.zeros(4), 0.5), "center"),
    "features_anchors_dim": (losses.rectify_teacher_features,
                             (_g, _y, _anchors[:3], np.zeros(D), 0.5),
                             "anchors"),
    "features_rank": (losses.rectify_teacher_features,
                      (_h[0], _y, _anchors, _center, 0.5),
                      "teacher_features"),
    "rrd_student_dim": (losses.representation_rectified_loss,
                        (_g[:, :-1], _h, _y, _anchors, _center, 0.5),
                        "projected_student_features"),
    "mean_rank": (losses.balanced_mean, (_s, _y), "per_example"),
    "mean_where": (losses.balanced_mean, (_y.astype(np.float32), _y, None,
                                          np.ones(B + 1, bool)), "where"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_raises_at_trace_time_naming_argument(name):
  fn, args, match = BAD_INPUTS[name]
  with pytest.raises(ValueError, match=match):
    jax.jit(fn)(*args)


# ------------------------------------------------------------------ LTKD


@pytest.mark.parametrize("seed", SEEDS)
def test_group_kl_decomposition_is_exact(seed):
  """KL(p || q) = KL(P || Q) + sum_g P_g KL(p|g || q|g): in float64 on the numpy side,
  and krd_jax's float32 parts add up to KD's KL."""
  arrays, counts = make_inputs(seed, *SHAPES[1])
  a = f64(arrays)
  groups = np_terciles(counts)
  p, q = np_softmax(a["t"] / 4.0), np_softmax(a["s"] / 4.0)
  big_p = np.stack([p[:, groups == g].sum(1) for g in range(3)], 1)
  big_q = np.stack([q[:, groups == g].sum(1) for g in range(3)], 1)
  inner = np.stack([np_kl(p[:, groups == g] / big_p[:, g:g + 1],
                          np.log(q[:, groups == g] / big_q[:, g:g + 1])) for g in range(3)], 1)
  kl = np_kl(p, np.log(q))
  np.testing.assert_allclose(np_kl(big_p, np.log(big_q)) + (big_p * inner).sum(1), kl,
                             rtol=1e-12)
  cross, within, teacher_groups = losses.group_kl_decomposition(
      arrays["s"], arrays["t"], priors.group_matrix(counts), 4.0)
  np.testing.assert_allclose(teacher_groups, big_p, rtol=1e-5)
  np.testing.assert_allclose(within, inner, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(cross + jnp.sum(teacher_groups * within, 1), kl, rtol=1e-5,
                             atol=1e-6)


def test_ltkd_without_rebalancing_is_kd():
  arrays, counts = make_inputs(2, *SHAPES[1])
  groups = priors.group_matrix(counts)
  out = losses.ltkd_loss(arrays["s"], arrays["t"], groups,
                         priors.log_group_prior(counts, groups), group_tau=0.0,
                         within="teacher", rebalance="prior")
  np.testing.assert_allclose(out, losses.kd_loss(arrays["s"], arrays["t"]), rtol=1e-5,
                             atol=1e-6)
  with pytest.raises(ValueError, match="within must be one of"):
    losses.ltkd_loss(arrays["s"], arrays["t"], groups, np.zeros(3), within="equal")
  with pytest.raises(ValueError, match="rebalance must be one of"):
    losses.ltkd_loss(arrays["s"], arrays["t"], groups, np.zeros(3), rebalance="group")


def test_ltkd_batch_rebalancing():
  """The paper's rebalancing divides each group's batch-mean teacher probability out:
  one sample alone gets the uniform group target; a batch and its copy concatenated give
  the same per-sample losses; a batch without any tail-class image stays finite, and
  its rebalanced batch total is more even than the teacher's."""
  arrays, counts = make_inputs(3, *SHAPES[1])
  groups = priors.group_matrix(counts)
  log_prior = priors.log_group_prior(counts, groups)
  s, t = arrays["s"], arrays["t"]
  one = losses.ltkd_loss(s[:1], t[:1], groups, log_prior, beta=0.0)
  q = np_softmax(f64(arrays)["s"][:1] / 4.0)
  big_q = np.stack([q[:, groups.argmax(1) == g].sum(1) for g in range(3)], 1)
  np.testing.assert_allclose(one, 16.0 * np_kl(np.full((1, 3), 1 / 3), np.log(big_q)),
                             rtol=1e-5)
  twice = losses.ltkd_loss(np.concatenate([s, s]), np.concatenate([t, t]), groups,
                           log_prior)
  np.testing.assert_allclose(twice[:len(s)], losses.ltkd_loss(s, t, groups, log_prior),
                             rtol=1e-5, atol=1e-6)
  # Labels play no part: a batch whose images are all head classes is a batch like any
  # other (the teacher still spreads some mass on every group).
  head_only = np.asarray(t, np.float64).copy()
  head_only[:, groups.argmax(1) == 0] += 6.0  # a teacher sure of the head
  out = losses.ltkd_loss(s, head_only.astype(np.float32), groups, log_prior)
  assert np.all(np.isfinite(out))
  p = np_softmax(head_only / 4.0)
  big_p = np.stack([p[:, groups.argmax(1) == g].sum(1) for g in range(3)], 1)
  target = big_p / big_p.mean(0)
  target /= target.sum(1, keepdims=True)
  assert np.ptp(target.mean(0)) < np.ptp(big_p.mean(0))


def test_group_matrix_and_prior():
  counts = np.array([100, 60, 30, 10, 5, 2])
  groups = priors.group_matrix(counts)
  np.testing.assert_array_equal(groups.argmax(1), [0, 0, 1, 1, 2, 2])
  np.testing.assert_allclose(np.exp(priors.log_group_prior(counts, groups)),
                             [160 / 207, 40 / 207, 7 / 207], rtol=1e-6)
  # Absolute split of a small set: no many-shot group, so two groups.
  assert priors.group_matrix(counts, "absolute").shape == (6, 2)


# ------------------------------------------------------------- registry


def test_registry_names():
  assert losses.teacher_losses() == sorted(
      ["ce", "cb_ce", "ldam", "logit_adjusted", "balanced_softmax"])
  assert methods.names() == sorted(
      ["ce", "logit_adjusted", "balanced_softmax", "kd", "dkd", "bkd", "krd", "ltkd",
       "fitnet", "at", "pkt", "rkd", "crd", "reviewkd", "dist", "lskd", "ctkd"])


@pytest.mark.parametrize("call, match", [
    (lambda n: losses.teacher_loss("focal", n), r"allowed: \['balanced_"),
    (lambda n: losses.teacher_loss("ldam", n, margin=1), r"allowed: \['max_"),
    (lambda n: methods.objective("kdd", n), r"allowed: \['at', 'balanced_"),
    (lambda n: methods.objective("kd", n, alpha=1), "kd_weight"),
    (lambda n: methods.objective("krd", n, use_rrd=True), "anchors"),
    (lambda n: methods.objective("krd", n, use_rrd=False, ce="la"),
     r"methods\.krd\.ce='la' is not allowed; allowed: one of ce, logit_adjusted"),
    (lambda n: losses.teacher_loss("ce", np.r_[n[:-1], 0]), "classes"),
    (lambda n: losses.teacher_loss("ce", n)(_s, _y, np.ones(C + 1)),
     "class_weights"),
    (lambda n: losses.teacher_loss("ce", n)(_s[:, :-1], _y, np.ones(C)),
     "logits"),
])
def test_registry_rejects(call, match):
  with pytest.raises(ValueError, match=match):
    call(long_tail_counts(C))


TEACHER_REFS = {
    "ce": lambda a, n, w: ref_balanced_mean(np_ce(a["s"], a["y"]), a["y"], w),
    "cb_ce": lambda a, n, w: np.mean(
        np_effective_number(n)[a["y"]] * np_ce(a["s"], a["y"])),
    "ldam": lambda a, n, w: ref_balanced_mean(
        ref_ldam(a["s"], a["y"], 0.5 * (n / n.min())**-0.25, 30.0), a["y"], w),
    "logit_adjusted": lambda a, n, w: ref_balanced_mean(
        np_ce(a["s"] + np.log(np_prior(n)), a["y"]), a["y"], w),
    "balanced_softmax": lambda a, n, w: ref_balanced_mean(
        np_ce(a["s"] + np.log(n), a["y"]), a["y"], w),
}


@pytest.mark.parametrize("name", sorted(TEACHER_REFS))
def test_teacher_losses(name):
  arrays, counts = make_inputs(0, *SHAPES[1])
  fn = jax.jit(losses.teacher_loss(name, counts))
  # Before and after the DRW switch: same compiled function, new weights.
  for weights in (np.ones(len(counts)), np_effective_number(counts)):
    weights = weights.astype(np.float32)
    value = fn(arrays["s"], arrays["y"], weights)
    assert value.shape == () and value.dtype == jnp.float32
    np.testing.assert_allclose(
        value, TEACHER_REFS[name](f64(arrays), counts, weights), rtol=RTOL)


def _krd_hparams(arrays, **overrides):
  return dict(anchors=arrays["anchors"], center=arrays["center"], rho=1.0,
              alpha=2.0, beta=0.5, lam=0.3, ce="ce", use_rrd=True, **overrides)


STUDENT_CASES = {
    # case: (method, hparams from arrays, numpy (ce, {term: unscaled value}))
    "ce": ("ce", lambda a: {},
           lambda a, n: (np.mean(np_ce(a["s"], a["y"])), {})),
    "logit_adjusted": (
        "logit_adjusted", lambda a: {"tau": 0.5},
        lambda a, n: (np.mean(np_ce(a["s"] + 0.5 * np.log(np_prior(n)),
                                    a["y"])), {})),
    "balanced_softmax": (
        "balanced_softmax", lambda a: {},
        lambda a, n: (np.mean(np_ce(a["s"] + np.log(n), a["y"])), {})),
    "kd": ("kd", lambda a: {"kd_weight": 0.9, "ce_weight": 0.1},
           lambda a, n: (0.1 * np.mean(np_ce(a["s"], a["y"])),
                         {"kd": 0.9 * np.mean(ref_kd(a["s"], a["t"], 4.0))})),
    "dkd": ("dkd", lambda a: {},
            lambda a, n: (np.mean(np_ce(a["s"], a["y"])), {
                "dkd": np.mean(ref_dkd(a["s"], a["t"], a["y"], 1, 8, 4))})),
    "bkd": ("bkd", lambda a: {"temperature": 2.0},
            lambda a, n: (np.mean(np_ce(a["s"], a["y"])), {
                "bkd": np.mean(ref_bkd(a["s"], a["t"], np_effective_number(n),
                                       2.0))})),
    "krd": ("krd", _krd_hparams, lambda a, n: (np.mean(np_ce(a["s"], a["y"])), {
        "rrd": 2.0 * ref_balanced_mean(
            ref_rrd(a["f"] @ a["kernel"] + a["bias"], a["h"], a["y"], a["anchors"],
                    a["center"], 0.3),
            a["y"], 1 / np_prior(n)),
        "lrd": 0.5 * ref_balanced_mean(
            ref_kd(a["s"], ref_rectify(a["t"], a["y"], n, 1.0, True), 4.0),
            a["y"], 1 / np_prior(n))})),
    "ltkd": ("ltkd", lambda a: {"ce_weight": 0.5},
             lambda a, n: (0.5 * np.mean(np_ce(a["s"], a["y"])), {
                 "ltkd": np.mean(ref_ltkd(a["s"], a["t"], n, 4.0, 1.0, 1.0, 1.0,
                                          "uniform"))})),
    "ltkd_prior": ("ltkd", lambda a: {"rebalance": "prior", "group_tau": 0.5,
                                      "ce_weight": 0.5},
                   lambda a, n: (0.5 * np.mean(np_ce(a["s"], a["y"])), {
                       "ltkd": np.mean(ref_ltkd(a["s"], a["t"], n, 4.0, 0.5, 1.0, 1.0,
                                                "uniform", "prior"))})),
    "krd_lrd_only_la": (
        "krd", lambda a: dict(use_rrd=False, ce="logit_adjusted", tau=0.5),
        lambda a, n: (np.mean(np_ce(a["s"] + np.log(np_prior(n)), a["y"])), {
            "lrd": np.mean(ref_kd(a["s"], ref_rectify(a["t"], a["y"], n, 0.5,
                                                      True), 4.0))})),
    "krd_lrd_decoupled": (
        "krd", lambda a: dict(use_rrd=False, ce="ce", tau=0.5, lrd_form="decoupled",
                              nckd_weight=2.0),
        lambda a, n: (np.mean(np_ce(a["s"], a["y"])), {
            "lrd": np.mean(ref_dkd(a["s"], ref_rectify(a["t"], a["y"], n, 0.5, True),
                                   a["y"], 1.0, 2.0, 4.0))})),
    "krd_lrd_target": (
        "krd", lambda a: dict(use_rrd=False, ce="ce", tau=0.5, lrd_form="target",
                              nckd_weight=2.0),
        lambda a, n: (np.mean(np_ce(a["s"], a["y"])), {
            "lrd": np.mean(ref_dkd(a["s"], ref_rectify(a["t"], a["y"], n, 0.5, True),
                                   a["y"], 1.0, 0.0, 4.0) +
                           ref_dkd(a["s"], a["t"], a["y"], 0.0, 2.0, 4.0))})),
    # tau fitted on val replaces tau; the teacher's logits are divided by the fitted
    # temperature (teacher_scale = 1 / s) before they are rectified.
    "krd_fitted_on_val": (
        "krd", lambda a: dict(ce="ce", tau=1.0, fitted_tau=0.75, teacher_scale=0.5),
        lambda a, n: (np.mean(np_ce(a["s"], a["y"])), {
            "lrd": np.mean(ref_kd(a["s"], ref_rectify(0.5 * a["t"], a["y"], n, 0.75,
                                                      True), 4.0))})),
}


def _outputs(arrays):
  return methods.StudentOutputs(
      student_logits=arrays["s"], student_features=arrays["f"],
      params={"kernel": arrays["kernel"], "bias": arrays["bias"]},
      teacher_logits=arrays["t"], teacher_features=arrays["h"],
      labels=arrays["y"])


@pytest.mark.parametrize("name", sorted(STUDENT_CASES))
def test_student_objectives(name):
  arrays, counts = make_inputs(1, *SHAPES[1])
  method, hparams_fn, ref_fn = STUDENT_CASES[name]
  objective = methods.objective(method, counts, **hparams_fn(arrays))
  ref_ce, ref_terms = ref_fn(f64(arrays), counts)
  assert objective.needs_teacher == bool(ref_terms)
  # Only KRDistill with RRD trains something of its own: a projector to the anchors.
  if "rrd" in ref_terms:
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                          _outputs(arrays).replace(teacher_features=None))
    made = objective.init_params(jax.random.PRNGKey(0), shapes)
    assert jax.tree.map(np.shape, made) == {"kernel": arrays["kernel"].shape,
                                            "bias": arrays["bias"].shape}
  else:
    assert objective.init_params is None

  outputs, scale = _outputs(arrays), 0.25
  loss, metrics = jax.jit(objective.fn)(outputs, scale)
  expected = ref_ce + scale * sum(ref_terms.values())
  np.testing.assert_allclose(loss, expected, rtol=RTOL)
  np.testing.assert_allclose(metrics["ce"], ref_ce, rtol=RTOL)
  for key, value in ref_terms.items():
    np.testing.assert_allclose(metrics[key], scale * value, rtol=RTOL)
  assert all(m.shape == () and m.dtype == jnp.float32
             for m in metrics.values())

  huge = _outputs(dict(_scaled(arrays, 1e4), f=arrays["f"] * 1e4))
  grads = jax.grad(
      lambda s, f, p: objective.fn(
          huge.replace(student_logits=s, student_features=f, params=p), 1.0)[0],
      argnums=(0, 1, 2))(huge.student_logits, huge.student_features, huge.params)
  grads = jax.tree.leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_bkd_class_weights_switch_on_at_their_epoch():
  """Before `weights_from_epoch` BKD is plain KD (equal weights leave the renormalised
  teacher as it is), from it on the effective-number weights apply."""
  arrays, counts = make_inputs(1, *SHAPES[0])
  a = f64(arrays)
  switch = methods.get("bkd").constants(
      {"weights_from_epoch": 3}, methods.RunContext(len(counts), 0, lambda: None, 4))
  assert switch == {"switch_step": 12}
  objective = methods.objective("bkd", counts, temperature=2.0, **switch)
  for step, expected in ((11, ref_kd(a["s"], a["t"], 2.0)),
                         (12, ref_bkd(a["s"], a["t"], np_effective_number(counts), 2.0))):
    outputs = _outputs(arrays).replace(step=jnp.int32(step))
    _, metrics = jax.jit(objective.fn)(outputs, 1.0)
    np.testing.assert_allclose(metrics["bkd"], np.mean(expected), rtol=RTOL)
  with pytest.raises(ValueError, match="StudentOutputs.step"):
    objective.fn(_outputs(arrays), 1.0)
  with pytest.raises(ValueError, match="weights_from_epoch=1.5 is not allowed; allowed: an "
                     "integer >= 0"):
    methods.get("bkd").check({"weights_from_epoch": 1.5})


def test_student_objective_bad_outputs():
  arrays, counts = make_inputs(0, *SHAPES[0])
  kd = methods.objective("kd", counts)
  with pytest.raises(ValueError, match="teacher_logits"):
    kd.fn(methods.StudentOutputs(student_logits=arrays["s"],
                                labels=arrays["y"]), 1.0)
  with pytest.raises(ValueError, match="student_logits"):
    kd.fn(_outputs(dict(arrays, s=arrays["s"][:, :-1])), 1.0)
  krd = methods.objective("krd", counts, **_krd_hparams(arrays))
  with pytest.raises(ValueError, match="student_features"):
    jax.jit(krd.fn)(methods.StudentOutputs(
        student_logits=arrays["s"], teacher_logits=arrays["t"],
        teacher_features=arrays["h"], labels=arrays["y"]), 1.0)
