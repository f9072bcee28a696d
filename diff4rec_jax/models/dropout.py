"""Dropout whose mask comes from a counter-based integer hash.

`jax.random.bernoulli` draws 32 PRNG bits per element: with the 'rbg' key
XLA's RngBitGenerator, with 'threefry2x32' 20 rounds of threefry. On the
2-core CPU that is 19 ms ('rbg') or 11 ms ('threefry2x32') per
[128, 200, 50] mask, and SASRec's five such masks per training step took
about 43% of the BCE step (profile in results/speed.md).

`method='hash'` (the default) instead draws two 32-bit seeds from the
module's 'dropout' rng (one tiny PRNG call per mask) and hashes each
element's flat index with the murmur3 32-bit finalizer, twice, once per
seed: a few integer ops per element that XLA fuses with the multiply
(0.4 ms for the same mask). The finalizer is a bijection with full
avalanche, so the bits are uniform and uncorrelated across elements and
across seeds for this purpose (not cryptographic; tests/dropout_test.py
checks the keep rate and the independence of neighbouring elements and of
draws). Indices wrap above 2^32 elements per mask. `method='prng'` keeps
`jax.random.bernoulli`. Either way the mask is a deterministic function of
the rng, so runs stay reproducible and resumable.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

METHODS = ("hash", "prng")


def _fmix32(h: jax.Array) -> jax.Array:
  """murmur3's 32-bit finalizer (a bijection on uint32)."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def hash_bits(key: jax.Array, shape) -> jax.Array:
  """uint32 bits of `shape`, a function of `key` and each element's index."""
  seeds = jax.random.bits(key, (2,), jnp.uint32)
  idx = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
  return _fmix32(_fmix32(idx ^ seeds[0]) ^ seeds[1])


def keep_mask(key: jax.Array, rate: float, shape,
              method: str = "hash") -> jax.Array:
  """Boolean mask of `shape`, each entry True with probability 1 - rate."""
  if method == "prng":
    return jax.random.bernoulli(key, 1.0 - rate, shape)
  if method != "hash":
    raise ValueError(f"dropout method must be one of {METHODS}, got "
                     f"{method!r}")
  # Keep iff bits >= rate * 2^32 (rate is a static Python float).
  threshold = min(int(round(rate * 2.0 ** 32)), 2 ** 32 - 1)
  return hash_bits(key, shape) >= jnp.uint32(threshold)


class Dropout(nn.Module):
  """Inverted dropout (kept entries scaled by 1 / (1 - rate)), as
  `flax.linen.Dropout`, with the mask drawn by `keep_mask`."""
  rate: float
  method: str = "hash"

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    keep = keep_mask(self.make_rng("dropout"), self.rate, x.shape,
                     self.method)
    return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros_like(x))
