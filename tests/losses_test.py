"""Training losses against numpy."""

import jax
import jax.numpy as jnp
import numpy as np

from diff4rec_jax import losses


import pytest


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_ce_matches_numpy_log_softmax(dtype):
  """bfloat16: the same loss of the inputs rounded to bfloat16 (products
  accumulate in float32), not of the float32 inputs."""
  rng = np.random.default_rng(0)
  h = rng.normal(size=(2, 4, 5)).astype(np.float32)
  table = rng.normal(size=(8, 5)).astype(np.float32)
  tg = np.array([[0, 3, 7, 1], [0, 0, 2, 5]], np.int32)
  s, n = losses.ce_loss(jnp.array(h), jnp.array(table), jnp.array(tg), dtype)
  exact = float(losses.ce_loss(jnp.array(h), jnp.array(table),
                               jnp.array(tg))[0])
  if dtype == "bfloat16":
    h = np.asarray(jnp.array(h).astype(jnp.bfloat16).astype(jnp.float32))
    table = np.asarray(jnp.array(table).astype(jnp.bfloat16)
                       .astype(jnp.float32))
    assert float(s) != exact
  logits = h.astype(np.float64) @ table[1:].T.astype(np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  want = -sum(logp[b, l, tg[b, l] - 1] for b in range(2) for l in range(4)
              if tg[b, l] > 0)
  assert float(n) == 5
  np.testing.assert_allclose(float(s), want, rtol=1e-5)


def test_bce_matches_formula():
  h = jnp.array([[[1.0, 0.0], [0.0, 2.0]]])
  table = jnp.array([[0, 0], [1.0, 0], [0, 1.0], [1.0, 1.0]])
  tg = jnp.array([[1, 0]])
  neg = jnp.array([[3, 2]])
  s, n = losses.bce_loss(h, table, tg, neg)
  sig = lambda x: 1 / (1 + np.exp(-x))
  want = -np.log(sig(1.0)) - np.log(1 - sig(1.0))
  np.testing.assert_allclose(float(s), want, rtol=1e-6)
  assert float(n) == 1


def test_negatives_avoid_seen_items():
  seen = jnp.array([[1, 2, 3, 4, 5, 6, 7, 8]])
  neg = losses.sample_negatives(jax.random.key(0), seen, 10, (1, 2000),
                                rounds=6)
  neg = np.asarray(neg)
  assert neg.min() >= 1 and neg.max() <= 10
  # 8 of 10 items are seen: after 6 rounds at most (0.8)^7 ~ 21% collide.
  assert np.isin(neg, np.arange(1, 9)).mean() < 0.3
  assert set(np.unique(neg)) >= {9, 10}


def _rand_case(seed=0, b=3, l=5, d=8, n=40):
  r = np.random.default_rng(seed)
  hidden = jnp.asarray(r.normal(size=(b, l, d)), jnp.float32)
  table = jnp.asarray(r.normal(size=(n + 1, d)), jnp.float32)
  targets = r.integers(1, n + 1, (b, l)).astype(np.int32)
  targets[0, :2] = 0                                  # positions without one
  return hidden, table, jnp.asarray(targets), n


def test_sampled_ce_over_every_item_equals_full_ce():
  hidden, table, targets, n = _rand_case()
  every = jnp.arange(1, n + 1, dtype=jnp.int32)
  got = losses.sampled_ce_loss(hidden, table, targets, every)
  want = losses.ce_loss(hidden, table, targets)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  assert float(got[1]) == float(want[1]) == 13


def test_sampled_ce_with_log_q_matches_numpy():
  hidden, table, targets, n = _rand_case(1)
  neg = jnp.asarray([3, 7, 7, 12, 40], jnp.int32)
  counts = np.arange(n + 1) % 5
  log_q = losses.popularity_log_q(counts)
  got, cnt = losses.sampled_ce_loss(hidden, table, targets, neg, log_q)
  h, e, t, lq = (np.asarray(x, np.float64) for x in (hidden, table, targets,
                                                      log_q))
  want = 0.0
  for i in range(h.shape[0]):
    for j in range(h.shape[1]):
      tj = int(t[i, j])
      if tj == 0:
        continue
      pos = h[i, j] @ e[tj] - lq[tj]
      negs = [h[i, j] @ e[k] - lq[k] for k in np.asarray(neg) if k != tj]
      want += np.log(np.exp(pos) + np.sum(np.exp(negs))) - pos
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  assert float(cnt) == 13


def test_shared_negatives_follow_the_sampler():
  counts = np.array([0, 0, 9, 29, 59, 99])       # (c + 1) ~ 1, 10, 30, 60, 100
  log_q = losses.popularity_log_q(counts)
  draws = np.asarray(losses.sample_shared_negatives(
      jax.random.key(0), 200_000, 5, log_q))
  freq = np.bincount(draws, minlength=6)[1:] / draws.size
  np.testing.assert_allclose(freq, np.array([1, 10, 30, 60, 100]) / 201,
                             atol=3e-3)
  uni = np.asarray(losses.sample_shared_negatives(jax.random.key(1), 50_000,
                                                  5))
  assert uni.min() == 1 and uni.max() == 5
  np.testing.assert_allclose(np.bincount(uni)[1:] / uni.size, 0.2, atol=6e-3)


def test_sampled_ce_gradient_is_finite_with_padding_and_log_q():
  hidden, table, targets, n = _rand_case(2)
  log_q = losses.popularity_log_q(np.arange(n + 1))
  neg = jnp.arange(1, 9, dtype=jnp.int32)
  g = jax.grad(lambda h, e: losses.sampled_ce_loss(h, e, targets, neg,
                                                   log_q)[0],
               argnums=(0, 1))(hidden, table)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in g)
  assert float(jnp.abs(g[0][0, :2]).max()) == 0.0    # no target: no gradient
