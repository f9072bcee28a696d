"""Tests of the similarity (Eq. 11), the pacing functions and the sampler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from diff4rec_jax import curriculum
from diff4rec_jax import pool as pool_lib

L, K, D, N = 10, 4, 6, 30


def _numpy_sim(emb, orig, copies):
  """Cosine of mean embeddings, padding excluded, one pair at a time."""
  out = np.zeros(copies.shape[:2])
  for b in range(copies.shape[0]):
    a_ids = orig[b][orig[b] > 0]
    for r in range(copies.shape[1]):
      c_ids = copies[b, r][copies[b, r] > 0]
      if len(a_ids) == 0 or len(c_ids) == 0:
        continue
      x, y = emb[a_ids].mean(0), emb[c_ids].mean(0)
      out[b, r] = x @ y / (np.linalg.norm(x) * np.linalg.norm(y))
  return out


def _data(seed=0, u=23):
  rng = np.random.default_rng(seed)
  emb = rng.normal(size=(N + 1, D)).astype(np.float32)
  lengths = rng.integers(0, L + 1, u)
  lengths[:3] = [0, L, 1]
  seqs = np.where(np.arange(L)[None] >= L - lengths[:, None],
                  rng.integers(1, N + 1, (u, L)), 0).astype(np.int32)
  copies = np.where(np.arange(L)[None, None] >= L - lengths[:, None, None],
                    rng.integers(1, N + 1, (u, K, L)), 0).astype(np.int32)
  copies[3, 0] = seqs[3]                        # an identical copy: Sim = 1
  return emb, seqs, lengths, copies


def test_similarity_matches_numpy():
  emb, seqs, _, copies = _data()
  got = np.asarray(curriculum.similarity(jnp.asarray(emb), seqs, copies))
  want = _numpy_sim(emb, seqs, copies)
  np.testing.assert_allclose(got, want, atol=2e-6)
  assert (got[0] == 0).all()                    # empty sequence
  np.testing.assert_allclose(got[3, 0], 1.0, atol=1e-6)
  # The padding row's value and the order of the items do not matter.
  emb2 = emb.copy()
  emb2[0] = 100.0
  np.testing.assert_allclose(
      np.asarray(curriculum.similarity(jnp.asarray(emb2), seqs, copies)),
      got, atol=1e-6)
  np.testing.assert_allclose(
      np.asarray(curriculum.similarity(jnp.asarray(emb), seqs,
                                       copies[:, :, ::-1])), got, atol=2e-6)


def test_similarity_all_batches_and_buckets():
  emb, seqs, lengths, copies = _data()
  want = np.asarray(curriculum.similarity(jnp.asarray(emb), seqs, copies))
  got = pool_lib.similarity_all(emb, seqs, copies, lengths, batch_size=8,
                                  widths=(4,))
  np.testing.assert_allclose(got, want, atol=2e-6)
  got2 = pool_lib.similarity_all(emb, seqs, copies, batch_size=64)
  np.testing.assert_allclose(got2, want, atol=2e-6)


def test_score_all_equals_augment_then_similarity():
  emb, seqs, lengths, _ = _data()
  rng = np.random.default_rng(1)
  cand = rng.integers(1, N + 1, (len(seqs), 8)).astype(np.int32)
  prob = rng.random((len(seqs), 8)).astype(np.float32)
  kw = dict(num_copies=K, ratio=0.3, batch_size=8, widths=(4,))
  key = jax.random.key(0)
  copies = pool_lib.augment_all(key, seqs, lengths, cand, prob, **kw)
  want = pool_lib.similarity_all(emb, seqs, copies, lengths, batch_size=8,
                                   widths=(4,))
  got = pool_lib.score_all(key, emb, seqs, lengths, cand, prob, **kw)
  np.testing.assert_allclose(got, want, atol=2e-6)


@pytest.mark.parametrize("kind", ["linear", "root", "step", "none"])
def test_pacing_monotone_with_endpoints(kind):
  start, end = 0.2, 0.8
  p = jnp.linspace(0.0, 1.0, 1001)
  f = np.asarray(curriculum.admitted_fraction(p, kind, start, end, 4))
  assert (np.diff(f) >= 0).all()
  if kind == "none":
    assert (f == 1).all()
    return
  assert f[0] == pytest.approx(start)
  assert (f[p >= end] == 1.0).all()
  assert (f[np.asarray(p) < end * 0.75] < 1.0).all()
  if kind == "linear":
    assert float(curriculum.admitted_fraction(0.4, kind, start, end)) == (
        pytest.approx(0.6))
  if kind == "root":
    assert float(curriculum.admitted_fraction(0.4, kind, start, end)) == (
        pytest.approx(np.sqrt(0.04 + 0.96 * 0.5)))
  if kind == "step":
    assert len(np.unique(f)) == 5    # start + 4 increments
  # Jit-compatible with a traced progress.
  jf = jax.jit(lambda q: curriculum.admitted_fraction(q, kind, start, end))
  np.testing.assert_allclose(jf(jnp.float32(0.3)),
                             curriculum.admitted_fraction(0.3, kind, start,
                                                          end))


def test_admitted_count_and_config():
  pool = 1000
  assert int(curriculum.admitted_count(0.0, pool, "linear", 0.2, 0.8)) == 200
  assert int(curriculum.admitted_count(1.0, pool, "linear", 0.2, 0.8)) == pool
  assert int(curriculum.admitted_count(0.0, 3, "linear", 0.01)) == 1
  c = base.get_config()
  a = c.augment
  assert int(pool_lib.admitted_count_from_config(0.0, pool, a)) == 200
  assert int(pool_lib.admitted_count_from_config(0.0, pool, a,
                                                 mode="aug")) == pool
  with pytest.raises(ValueError, match="pacing kind"):
    curriculum.admitted_fraction(0.5, "exp", 0.2)


def test_pool_order():
  sim = np.array([[0.1, 0.9], [np.nan, 0.5], [0.9, -1.0]])
  order = curriculum.pool_order(sim)
  np.testing.assert_array_equal(order, [1, 4, 3, 0, 5, 2])
  assert order.dtype == np.int32
  u, r = curriculum.split_index(order, 2)
  np.testing.assert_array_equal(u * 2 + r, order)


def test_pool_order_per_user_rounds():
  # Global: 0.9, 0.8 (user 0) before 0.3, 0.2 (user 1). Per user: round 0
  # = each user's easiest copy (0, then 2), round 1 = the rest (1, 3).
  sim = np.array([[0.9, 0.8], [0.3, 0.2]])
  np.testing.assert_array_equal(curriculum.pool_order(sim), [0, 1, 2, 3])
  np.testing.assert_array_equal(curriculum.pool_order(sim, "per_user"),
                                [0, 2, 1, 3])
  # NaN is last within its user; equal keys keep index order.
  sim = np.array([[0.5, 0.8], [np.nan, 0.2], [0.8, 0.5]])
  order = curriculum.pool_order(sim, "per_user")
  np.testing.assert_array_equal(order, [1, 4, 3, 0, 5, 2])
  assert order.dtype == np.int32
  # Any prefix of k * U entries holds exactly k copies of every user.
  rng = np.random.default_rng(0)
  sim = rng.normal(size=(50, 7))
  users = curriculum.pool_order(sim, "per_user") // 7
  for k in range(1, 8):
    np.testing.assert_array_equal(np.bincount(users[:50 * k], minlength=50),
                                  np.full(50, k))
  with pytest.raises(ValueError, match="scope"):
    curriculum.pool_order(sim, "per_item")


def test_pool_order_hard_first():
  # The reverse of easy_first on distinct similarities, NaN still last.
  sim = np.array([[0.1, 0.9], [np.nan, 0.5], [0.9, -1.0]])
  np.testing.assert_array_equal(
      curriculum.pool_order(sim, direction="hard_first"), [5, 0, 3, 1, 4, 2])
  rng = np.random.default_rng(1)
  sim = rng.normal(size=(40, 6))
  np.testing.assert_array_equal(
      curriculum.pool_order(sim, direction="hard_first"),
      curriculum.pool_order(sim)[::-1])
  # Per user: round 0 holds every user's least similar copy.
  order = curriculum.pool_order(sim, "per_user", "hard_first")
  u, r = curriculum.split_index(order[:40], 6)
  np.testing.assert_array_equal(np.sort(u), np.arange(40))
  np.testing.assert_array_equal(r, sim[u].argmin(axis=1))
  with pytest.raises(ValueError, match="direction"):
    curriculum.pool_order(sim, direction="random")


def test_sampler_admitted_only_and_compiles_once():
  rng = np.random.default_rng(0)
  order = jnp.asarray(rng.permutation(5000).astype(np.int32))
  before = curriculum._sample_admitted._cache_size()
  for i, count in enumerate([1, 7, 100, 2500, 5000]):
    got = np.asarray(curriculum.sample_admitted(
        jax.random.key(i), order, jnp.int32(count), 256))
    assert got.shape == (256,)
    assert np.isin(got, np.asarray(order[:count])).all()
    if count == 1:
      assert (got == int(order[0])).all()
  # Python ints trace the same way: still the one compilation.
  curriculum.sample_admitted(jax.random.key(9), order, 33, 256)
  assert curriculum._sample_admitted._cache_size() - before == 1
  # Uniform over the admitted prefix.
  many = np.asarray(curriculum.sample_admitted(jax.random.key(0), order, 4,
                                               256))
  many = np.concatenate([many] + [np.asarray(curriculum.sample_admitted(
      jax.random.key(s), order, 4, 256)) for s in range(1, 40)])
  freq = np.array([(many == int(order[i])).mean() for i in range(4)])
  np.testing.assert_allclose(freq, 0.25, atol=0.02)
