"""Tests of the augmentation kernel against hand rules and the numpy reference.

Every property is checked with an independent multiset computation on both
the compiled kernel and `augment_reference`; the distribution tests compare
empirical frequencies with exact Plackett-Luce probabilities.
"""

import collections

from hypothesis import given, settings, strategies as st
import jax
import ml_collections
import numpy as np
import pytest

from configs import base
from diff4rec_jax import augment
from diff4rec_jax import config_lib
from diff4rec_jax import pool

L, M, K = 12, 8, 6
RATIO = 0.3


def _case(seed=0, b=40):
  """A batch with the awkward cases: overlaps, repeats, zeros, caps."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(0, L + 1, b)
  lengths[:4] = [0, 1, L, 5]
  items = rng.integers(1, 30, (b, L)).astype(np.int32)
  seqs = np.where(np.arange(L)[None] >= L - lengths[:, None], items, 0)
  cand = rng.integers(0, 40, (b, M)).astype(np.int32)
  cand[4, :3] = seqs[4, -3:]          # candidates that are sequence items
  cand[5, 1] = cand[5, 0]             # a repeated candidate
  prob = rng.random((b, M)).astype(np.float32)
  prob[rng.random((b, M)) < 0.2] = 0.0
  prob[6] = 0.0                       # no eligible candidate: pure reorder
  prob[7] = 0.0
  prob[7, 0] = 1.0                    # one eligible candidate: n capped to 1
  cand[7, 0] = 99
  lengths[6:8] = L
  seqs[6:8] = np.arange(1, L + 1)
  cand[2] = np.arange(100, 100 + M)   # enough candidates for the full n
  prob[2] = 0.5
  return seqs.astype(np.int32), lengths, cand, prob


def _run(key, seqs, lengths, cand, prob, **kw):
  """augment_batch with explicit user ids (one compilation shared by all)."""
  ids = np.arange(len(seqs), dtype=np.uint32)
  return np.asarray(augment.augment_batch(
      jax.random.key(key), seqs, lengths, cand, prob, user_ids=ids, **kw))


def _eligible(seq, cand, prob):
  have, seen, ok = set(seq[seq > 0].tolist()), set(), []
  for c, p in zip(cand.tolist(), prob.tolist()):
    if c > 0 and p > 0 and c not in have and c not in seen:
      ok.append(c)
    seen.add(c)
  return ok


def _check_properties(out, seqs, lengths, cand, prob, ratio, reorder,
                      min_replaced=0):
  """The invariants of Algorithm 1 as implemented; returns n_eff per user."""
  b, k, l = out.shape
  n_effs = []
  for i in range(b):
    n = int(lengths[i])
    orig = seqs[i, l - n:]
    ok = set(_eligible(seqs[i], cand[i], prob[i]))
    n_eff = min(int(augment.num_replaced(n, ratio, min_replaced)), len(ok))
    n_effs.append(n_eff)
    for r in range(k):
      copy = out[i, r]
      assert (copy[:l - n] == 0).all(), "padding must stay where it is"
      assert (copy[l - n:] > 0).all(), "no item becomes padding"
      added = collections.Counter(copy[l - n:].tolist())
      added.subtract(collections.Counter(orig.tolist()))
      new = [x for x, c in added.items() if c > 0 for _ in range(c)]
      gone = [x for x, c in added.items() if c < 0 for _ in range(-c)]
      assert len(new) == n_eff and len(gone) == n_eff, (i, r, new, gone)
      assert len(set(new)) == n_eff, "no repeated candidate in one copy"
      assert set(new) <= ok, "new items are eligible candidates"
      if not reorder:
        assert (copy[l - n:] != orig).sum() == n_eff
  return n_effs


@pytest.mark.parametrize("reorder", [True, False])
def test_kernel_and_reference_properties(reorder):
  seqs, lengths, cand, prob = _case()
  out = _run(1, seqs, lengths, cand, prob, num_copies=K, ratio=RATIO,
             reorder=reorder)
  ref = augment.augment_reference(
      np.random.default_rng(1), seqs, lengths, cand, prob, num_copies=K,
      ratio=RATIO, reorder=reorder)
  assert out.shape == ref.shape == (len(seqs), K, L)
  assert out.dtype == np.int32
  n_kernel = _check_properties(out, seqs, lengths, cand, prob, RATIO, reorder)
  n_ref = _check_properties(ref, seqs, lengths, cand, prob, RATIO, reorder)
  assert n_kernel == n_ref
  assert n_kernel[6] == 0 and n_kernel[7] == 1   # no / one eligible
  assert n_kernel[2] == 4                        # round_half_up(0.3 * 12)
  # Copies of one user differ (users with something to change).
  busy = [i for i in range(len(seqs))
          if lengths[i] >= 4 and (reorder or n_kernel[i] > 0)]
  assert all(len({out[i, r].tobytes() for r in range(K)}) > 1 for i in busy)


def test_min_replaced_sets_a_floor_in_kernel_and_reference():
  """ratio 0.1 alone replaces 1 of 12 items and none of under 5; with
  min_replaced=2 every copy replaces 2 (1 in a 1-item sequence), capped by
  the eligible candidates as before."""
  seqs, lengths, cand, prob = _case()
  kw = dict(num_copies=K, ratio=0.1, reorder=True, min_replaced=2)
  out = _run(1, seqs, lengths, cand, prob, **kw)
  ref = augment.augment_reference(np.random.default_rng(1), seqs, lengths,
                                  cand, prob, **kw)
  n_kernel = _check_properties(out, seqs, lengths, cand, prob, 0.1, True, 2)
  n_ref = _check_properties(ref, seqs, lengths, cand, prob, 0.1, True, 2)
  assert n_kernel == n_ref
  assert n_kernel[:3] == [0, 1, 2]       # lengths 0, 1, 12 (enough cands)
  assert n_kernel[6] == 0 and n_kernel[7] == 1   # no / one eligible
  plain = _check_properties(
      _run(1, seqs, lengths, cand, prob, num_copies=K, ratio=0.1),
      seqs, lengths, cand, prob, 0.1, True)
  assert plain[:3] == [0, 0, 1]
  assert sum(plain) < sum(n_kernel)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_properties_on_random_batches(seed):
  # Same shapes as above: one compilation for every example.
  seqs, lengths, cand, prob = _case(seed)
  out = _run(seed, seqs, lengths, cand, prob, num_copies=K, ratio=RATIO,
             reorder=True)
  _check_properties(out, seqs, lengths, cand, prob, RATIO, True)


def test_deterministic_and_key_dependent():
  seqs, lengths, cand, prob = _case()
  f = lambda k: _run(k, seqs, lengths, cand, prob, num_copies=K, ratio=RATIO,
                     reorder=True)
  np.testing.assert_array_equal(f(3), f(3))
  assert (f(3) != f(4)).any()


def test_independent_of_width_batch_and_selection():
  seqs, lengths, cand, prob = _case()
  key = jax.random.key(5)
  full = _run(5, seqs, lengths, cand, prob, num_copies=K, ratio=RATIO,
              reorder=True)
  # The bucketed driver (rows of width 8 and 12, other batches, the last
  # padded) gives the same copies: independent of width and batching.
  got = pool.augment_all(key, seqs, lengths, cand, prob, num_copies=K,
                            ratio=RATIO, batch_size=len(seqs), widths=(8,))
  np.testing.assert_array_equal(got, full)
  # Without the repeat check, rows that repeat no candidate are unchanged.
  plain = ~np.array([augment.has_repeats(c[None]) for c in cand])
  assert 0 < plain.sum() < len(cand)
  nodup = _run(5, seqs, lengths, cand, prob, num_copies=K, ratio=RATIO,
               reorder=True, dedupe=False)
  np.testing.assert_array_equal(nodup[plain], full[plain])
  # Single copies rebuilt on demand.
  users = np.array([0, 2, 4, 4, 9, 39])
  copies = np.array([0, 5, 1, 3, 2, 5])
  sel = np.asarray(augment.augment_copies(
      key, seqs[users], lengths[users], cand[users], prob[users],
      users.astype(np.uint32), copies, num_copies=K, ratio=RATIO))
  np.testing.assert_array_equal(sel, full[users, copies])


def _repeat_user(num, seq, cand, prob):
  return (np.tile(seq, (num, 1)).astype(np.int32),
          np.full(num, np.count_nonzero(seq)),
          np.tile(cand, (num, 1)).astype(np.int32),
          np.tile(prob, (num, 1)).astype(np.float32))


def test_distribution_one_replacement_and_uniform_reorder():
  # One user, 5 items, n = round(0.2 * 5) = 1; 3 candidates 0.6/0.3/0.1.
  seq = np.array([0, 0, 0, 1, 2, 3, 4, 5])
  cand = np.array([7, 8, 9, 0])
  prob = np.array([0.6, 0.3, 0.1, 0.0])
  u = 2000
  out = np.asarray(augment.augment_batch(
      jax.random.key(0), *_repeat_user(u, seq, cand, prob), num_copies=10,
      ratio=0.2, temperature=1.0)).reshape(-1, 8)[:, 3:]
  total = len(out)
  new_slot = np.isin(out, [7, 8, 9])
  assert (new_slot.sum(1) == 1).all()
  new = out[new_slot]
  freq = np.array([(new == c).mean() for c in (7, 8, 9)])
  np.testing.assert_allclose(freq, [0.6, 0.3, 0.1], atol=0.012)
  # The new item lands on each of the 5 slots with probability 1/5, and each
  # original item is the one removed with probability 1/5.
  np.testing.assert_allclose(new_slot.mean(0), 0.2, atol=0.012)
  removed = [(~np.isin(np.arange(1, 6), row)).argmax() for row in out]
  np.testing.assert_allclose(np.bincount(removed, minlength=5) / total, 0.2,
                             atol=0.012)
  # An original item is at each slot equally often too.
  np.testing.assert_allclose((out == 1).mean(0) * 5 / 4, 0.2, atol=0.012)


def test_distribution_two_draws_without_replacement_and_temperature():
  seq = np.array([1, 2, 3, 4, 5, 6, 7, 8])   # n = round(0.2 * 8) = 2
  cand = np.array([7 + 20, 8 + 20, 9 + 20, 0])
  p = np.array([0.6, 0.3, 0.1, 0.0])
  u = 2000
  got = np.asarray(augment.augment_batch(
      jax.random.key(2), *_repeat_user(u, seq, cand, p), num_copies=10,
      ratio=0.2, temperature=1.0)).reshape(-1, 8)
  pairs = collections.Counter(
      tuple(sorted(row[row > 20].tolist())) for row in got)
  # Successive sampling without replacement: P({a,b}) = pa pb/(1-pa) + ...
  def pl(i, j):
    return p[i] * p[j] / (1 - p[i]) + p[j] * p[i] / (1 - p[j])
  for (i, j) in [(0, 1), (0, 2), (1, 2)]:
    key = (int(cand[i]), int(cand[j]))
    assert abs(pairs[key] / len(got) - pl(i, j)) < 0.012, (key, pairs)
  # Temperature 2: one draw with probability ~ sqrt(p).
  seq1 = np.array([0, 0, 0, 1, 2, 3, 4, 5])
  one = np.asarray(augment.augment_batch(
      jax.random.key(3), *_repeat_user(u, seq1, cand, p), num_copies=10,
      ratio=0.2, temperature=2.0)).reshape(-1, 8)
  new = one[one > 20]
  want = np.sqrt(p[:3]) / np.sqrt(p[:3]).sum()
  freq = np.array([(new == c).mean() for c in cand[:3]])
  np.testing.assert_allclose(freq, want, atol=0.012)


def test_reference_distribution_matches():
  # The reference draws from the same law (coarser tolerance, fewer draws).
  seq = np.array([[0, 0, 0, 1, 2, 3, 4, 5]])
  cand = np.array([[7, 8, 9, 0]])
  prob = np.array([[0.6, 0.3, 0.1, 0.0]])
  ref = augment.augment_reference(np.random.default_rng(0), seq, [5], cand,
                                  prob, num_copies=4000, ratio=0.2)[0, :, 3:]
  new = ref[np.isin(ref, [7, 8, 9])]
  assert len(new) == 4000
  freq = np.array([(new == c).mean() for c in (7, 8, 9)])
  np.testing.assert_allclose(freq, [0.6, 0.3, 0.1], atol=0.03)


def test_has_repeats():
  assert augment.has_repeats(np.array([[1, 2, 3], [4, 5, 4]]))
  assert not augment.has_repeats(np.array([[1, 2, 3], [0, 5, 0]]))


def test_num_replaced_rounds_half_up():
  np.testing.assert_array_equal(
      augment.num_replaced(np.array([0, 1, 2, 3, 5, 10, 12]), 0.25),
      [0, 0, 1, 1, 1, 3, 3])
  assert augment.num_replaced(5, 0.1) == 1      # 0.5 -> 1
  assert augment.num_replaced(7, 1.0) == 7
  # min_replaced: a floor, never above the sequence's length.
  np.testing.assert_array_equal(
      augment.num_replaced(np.array([0, 1, 2, 3, 5, 10, 12]), 0.1, 1),
      [0, 1, 1, 1, 1, 1, 1])
  np.testing.assert_array_equal(
      augment.num_replaced(np.array([0, 1, 2, 3, 5, 10, 12]), 0.25, 2),
      [0, 1, 2, 2, 2, 3, 3])
  assert augment.num_replaced(4, 0.0, 3) == 3


def test_shift_pairs():
  seqs = np.array([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 0, 6]])
  inputs, targets = augment.shift_pairs(seqs)
  np.testing.assert_array_equal(
      inputs, [[0, 0, 0, 3, 4], [0, 1, 2, 3, 4], [0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(
      targets, [[0, 0, 0, 4, 5], [0, 2, 3, 4, 5], [0, 0, 0, 0, 0]])
  ji, jt = augment.shift_pairs(jax.numpy.asarray(seqs))
  np.testing.assert_array_equal(ji, inputs)
  np.testing.assert_array_equal(jt, targets)


def test_static_argument_errors():
  seqs, lengths, cand, prob = _case()
  with pytest.raises(ValueError, match="ratio"):
    augment.augment_batch(jax.random.key(0), seqs, lengths, cand, prob,
                          num_copies=2, ratio=1.5)
  with pytest.raises(ValueError, match="num_copies"):
    augment.augment_batch(jax.random.key(0), seqs, lengths, cand, prob,
                          num_copies=0, ratio=0.2)
  with pytest.raises(ValueError, match="min_replaced"):
    augment.augment_batch(jax.random.key(0), seqs, lengths, cand, prob,
                          num_copies=2, ratio=0.2, min_replaced=-1)


def test_validate_augment_config():
  c = base.get_config()
  config_lib.validate_augment_config(c)
  config_lib.validate_augment_config(c.augment)
  bad = [("num_copies", -1), ("num_copies", 2.5), ("num_copies", 0),
         ("ratio", 1.2), ("ratio", -0.1), ("min_replaced", -1),
         ("min_replaced", 0.5), ("top_m", 0), ("temperature", 0.0),
         ("reorder", 1), ("copies_per_batch", -1.0), ("loss_weight", -1),
         ("pacing", "cosine"), ("curriculum_scope", "user"),
         ("curriculum_direction", "backwards"),
         ("pacing_start", 0.0), ("pacing_end", 1.5),
         ("pacing_stages", 0), ("pacing_epochs", -1),
         ("similarity_source", "oracle"),
         ("rescore_every", -2), ("batch_size", 0), ("warmup_epochs", -1)]
  for field, value in bad:
    a = c.augment.to_dict()
    a[field] = value
    with pytest.raises(ValueError, match=f"config.augment.{field}"):
      config_lib.validate_augment_config(ml_collections.ConfigDict(a))
  a = c.augment.to_dict()
  del a["ratio"]
  with pytest.raises(ValueError, match="config.augment.ratio: is missing"):
    config_lib.validate_augment_config(ml_collections.ConfigDict(a))
  c = base.get_config()
  c.augment.similarity_source = "checkpoint"
  with pytest.raises(ValueError, match="similarity_checkpoint"):
    config_lib.validate_augment_config(c)
  if "top_m" in c.generator:
    c = base.get_config()
    c.mode = "diff4rec"
    c.augment.top_m = c.generator.top_m + 1
    with pytest.raises(ValueError, match="config.augment.top_m"):
      config_lib.validate_augment_config(c)


def test_exclude_history_false_lets_copies_repeat_their_own_items():
  """Candidates that are all the user's own items: excluded (the default)
  they leave a pure reordering; allowed, each copy replaces n items by
  distinct ones of them, so it holds repeats, in kernel and reference."""
  seq = np.arange(1, L + 1, dtype=np.int32)[None]          # items 1..12
  cand = np.arange(1, M + 1, dtype=np.int32)[None]         # items 1..8
  prob = np.full((1, M), 0.5, np.float32)
  n = int(augment.num_replaced(L, RATIO))
  kw = dict(num_copies=K, ratio=RATIO)
  kept = _run(0, seq, np.array([L]), cand, prob, **kw)[0]
  for copy in kept:
    assert sorted(copy.tolist()) == list(range(1, L + 1))
  ref_kw = dict(kw, exclude_history=False)
  lengths = np.array([L])
  for copies in (_run(0, seq, lengths, cand, prob, **ref_kw)[0],
                 augment.augment_reference(np.random.default_rng(0), seq,
                                           lengths, cand, prob, **ref_kw)[0]):
    for copy in copies:
      counts = collections.Counter(copy.tolist())
      lost = set(range(1, L + 1)) - set(counts)
      assert len(copy) == L and 0 not in counts
      # n positions got distinct candidates; a candidate that landed on its
      # own position changes nothing, so at most n items are lost.
      assert len(lost) <= n
      assert sum(c - 1 for c in counts.values()) == len(lost)
      assert set(k for k, c in counts.items() if c > 1) <= set(range(1, M + 1))
  assert any(len(set(c.tolist())) < L
             for c in _run(0, seq, np.array([L]), cand, prob, **ref_kw)[0])
