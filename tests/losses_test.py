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
