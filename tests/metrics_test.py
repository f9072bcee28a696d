"""Full-ranking metrics against an independent numpy computation."""

import jax.numpy as jnp
import numpy as np
import pytest

from diff4rec_jax import metrics


def _random_case(seed, b=9, n=1000, d=8, h=40):
  rng = np.random.default_rng(seed)
  table = rng.normal(size=(n + 1, d)).astype(np.float32)
  hidden = rng.normal(size=(b, d)).astype(np.float32)
  targets = rng.integers(1, n + 1, b).astype(np.int32)
  hist = []
  for i in range(b):
    x = np.unique(rng.integers(1, n + 1, h))
    hist.append(x[x != targets[i]])
  return table, hidden, targets, hist, _bits(hist, n)


def _bits(hist, n):
  """Per-row item lists -> the [B, W] bitset target_ranks masks with."""
  row_of = np.concatenate([np.full(len(x), i) for i, x in enumerate(hist)])
  return metrics.history_words(row_of, np.concatenate(hist), len(hist), n)


@pytest.mark.parametrize("chunk", [32, 256, 4096])
@pytest.mark.parametrize("mask", [True, False])
def test_ranks_match_numpy(chunk, mask):
  table, hidden, targets, hist, padded = _random_case(0)
  n = table.shape[0] - 1
  got = metrics.target_ranks(jnp.array(hidden), jnp.array(table),
                             jnp.array(targets),
                             jnp.array(padded) if mask else None, n, chunk)
  scores = hidden.astype(np.float64) @ table.T.astype(np.float64)
  want = metrics.numpy_ranks(scores, targets, hist if mask else None)
  np.testing.assert_array_equal(np.asarray(got), want)


def test_history_target_repeat_is_not_masked():
  # The target itself appears in the history list: it must still be ranked.
  table = np.array([[0, 0], [3, 0], [2, 0], [1, 0]], np.float32)
  hidden = np.array([[1, 0]], np.float32)
  hist = _bits([np.array([1, 3])], 3)    # 3 is the target
  r = metrics.target_ranks(jnp.array(hidden), jnp.array(table),
                           jnp.array([3]), jnp.array(hist), 3, 32)
  assert int(r[0]) == 1                  # item 1 masked, item 2 ahead


def test_ties_are_pessimistic():
  # Items 1..5 all score exactly 2.0 (exact small integers): the target is
  # ranked after all four others.
  table = np.zeros((6, 2), np.float32)
  table[1:] = [1.0, 1.0]
  hidden = np.array([[1.0, 1.0]], np.float32)
  r = metrics.target_ranks(jnp.array(hidden), jnp.array(table),
                           jnp.array([3]), None, 5, 32)
  assert int(r[0]) == 4
  # A constant (all-zero) model ranks every target last, never first.
  r = metrics.target_ranks(jnp.zeros((1, 2)), jnp.zeros((6, 2)),
                           jnp.array([1]), None, 5, 32)
  assert int(r[0]) == 4


def test_metric_formulas():
  ranks = np.array([0, 1, 4, 9, 19, 100], np.int32)
  w = np.array([1, 1, 1, 1, 1, 0], np.float32)   # last row is padding
  sums = metrics.metrics_from_ranks(jnp.array(ranks), jnp.array(w))
  got = metrics.finalize(sums)
  r = ranks[:5]
  for k in (5, 10, 20):
    assert got[f"HR@{k}"] == pytest.approx(np.mean(r < k))
    ndcg = np.where(r < k, 1 / np.log2(r + 2), 0).mean()
    assert got[f"NDCG@{k}"] == pytest.approx(ndcg, rel=1e-6)
  assert got["MRR"] == pytest.approx(np.mean(1 / (r + 1)), rel=1e-6)


def test_history_words():
  # Row 0 holds items 1, 33 and 31 (bit 31: the top bit of word 0), row 1
  # item 64, row 2 nothing; N = 64 needs ceil(65 / 32) = 3 words.
  words = metrics.history_words(np.array([0, 0, 0, 1]),
                                np.array([1, 33, 31, 64]), 3, 64)
  assert words.dtype == np.uint32 and words.shape == (3, 3)
  assert words.tolist() == [[2 + 2**31, 2, 0], [0, 0, 1], [0, 0, 0]]


def test_history_words_match_a_loop():
  rng = np.random.default_rng(1)
  hist = [np.unique(rng.integers(1, 301, rng.integers(0, 60)))
          for _ in range(7)]
  want = np.zeros((7, metrics.num_words(300)), np.uint32)
  for i, x in enumerate(hist):
    for item in x:
      want[i, item // 32] |= np.uint32(1 << (item % 32))
  np.testing.assert_array_equal(_bits(hist, 300), want)
