"""The hash-based dropout mask: rate, independence, determinism, scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diff4rec_jax.models import dropout


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.5, 0.9])
def test_keep_rate(rate):
  n = 400_000
  keep = np.asarray(dropout.keep_mask(jax.random.key(0), rate, (n,)))
  # Binomial std of the mean is sqrt(p (1 - p) / n) <= 0.0008: 5 sigma.
  assert abs(keep.mean() - (1 - rate)) < 0.004


def test_bits_are_uniform_per_byte():
  bits = np.asarray(dropout.hash_bits(jax.random.key(1), (100, 1000)))
  for shift in (0, 8, 16, 24):
    counts = np.bincount(((bits >> shift) & 0xFF).ravel(), minlength=256)
    expected = bits.size / 256
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 400   # 255 dof: mean 255, std 22.6; 400 is > 6 sigma


def test_neighbours_and_draws_are_uncorrelated():
  shape = (64, 200, 50)
  a = np.asarray(dropout.keep_mask(jax.random.key(2), 0.5, shape), np.float64)
  b = np.asarray(dropout.keep_mask(jax.random.key(3), 0.5, shape), np.float64)
  flat = a.ravel()
  for lag in (1, 2, 50, 200 * 50):   # next element, next position, next row
    r = np.corrcoef(flat[:-lag], flat[lag:])[0, 1]
    assert abs(r) < 0.01, (lag, r)
  assert abs(np.corrcoef(flat, b.ravel())[0, 1]) < 0.01
  # Same key, same mask (reproducible, resumable).
  again = np.asarray(dropout.keep_mask(jax.random.key(2), 0.5, shape))
  np.testing.assert_array_equal(again, a.astype(bool))


def test_seed_pairs_sharing_a_seed_are_uncorrelated():
  # (index ^ seed0) + seed1 is linear in each seed: check draws that share
  # one seed and differ (at random) in the other. (Seeds that differ by less
  # than the mask size shift or permute the stream: see index_hash.)
  idx = jnp.arange(200_000, dtype=jnp.uint32)
  u32 = lambda v: jnp.uint32(v)
  base = dropout.index_hash(idx, u32(0x12345678), u32(0x9ABCDEF0))
  others = [dropout.index_hash(idx, u32(0x12345678), u32(0x0F1E2D3C)),
            dropout.index_hash(idx, u32(0x87654321), u32(0x9ABCDEF0))]
  a = (np.asarray(base) >= 2 ** 31).astype(np.float64)
  for other in others:
    b = (np.asarray(other) >= 2 ** 31).astype(np.float64)
    for lag in (0, 1, 2, 50):
      r = np.corrcoef(a[lag:], b[:len(b) - lag])[0, 1]
      assert abs(r) < 0.015, (lag, r)   # 1 / sqrt(2e5) = 0.0022: > 6 sigma


def test_module_scales_kept_entries_and_is_identity_in_eval():
  x = jnp.ones((1000, 10))
  layer = dropout.Dropout(0.25)
  y = np.asarray(layer.apply({}, x, deterministic=False,
                             rngs={"dropout": jax.random.key(4)}))
  kept = y[y != 0]
  np.testing.assert_allclose(kept, 1 / 0.75, rtol=1e-6)
  assert abs((y > 0).mean() - 0.75) < 0.02
  np.testing.assert_array_equal(layer.apply({}, x, deterministic=True), x)


def test_prng_method_matches_jax_bernoulli():
  key = jax.random.key(5)
  got = dropout.keep_mask(key, 0.3, (7, 9), "prng")
  np.testing.assert_array_equal(got, jax.random.bernoulli(key, 0.7, (7, 9)))
  with pytest.raises(ValueError, match="dropout method"):
    dropout.keep_mask(key, 0.3, (2,), "fast")
