"""Dropout whose mask comes from a counter-based integer hash.

`jax.random.bernoulli` draws 32 PRNG bits per element: with the 'rbg' key
XLA's RngBitGenerator, with 'threefry2x32' 20 rounds of threefry. On the
2-core CPU that is 19 ms ('rbg') or 11 ms ('threefry2x32') per
[128, 200, 50] mask, and SASRec's five such masks per training step took
about 43% of the BCE step (profile in results/log/speed.md).

`method='hash'` (the default) instead draws two 32-bit seeds from the
module's 'dropout' rng (one tiny PRNG call per mask), mixes them into each
element's flat index ((index ^ seed0) + seed1) and hashes that with
`lowbias32` (C. Wellons' hash-prospector finalizer: two multiplies, three
xor-shifts): ten integer ops per element that XLA fuses with the multiply.
The finalizer is a bijection with full avalanche, so the bits are uniform
and uncorrelated across elements and across seeds for this purpose (not
cryptographic; tests/dropout_test.py checks the keep rate, per-byte
uniformity and the independence of neighbouring elements and of draws).
Indices wrap above 2^32 elements per mask. Until session 13 the hash was
murmur3's finalizer applied twice, once per seed (18 ops, four
multiplies); XLA recomputes a mask in every fusion that reads it (forward,
backward, transposed copies), and the one-round hash made whole BCE
training epochs x1.06-1.08 faster in wall time and x1.04-1.07 per CPU-second
(two in-process runs, results/log/speed.md, session 13). It draws different masks than the old one. `method='prng'` keeps
`jax.random.bernoulli`. Either way the mask is a deterministic function of
the rng, so runs stay reproducible and resumable.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

METHODS = ("hash", "prng")


def _lowbias32(h: jax.Array) -> jax.Array:
  """Wellons' `lowbias32` finalizer (a bijection on uint32)."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x7FEB352D)
  h = h ^ (h >> 15)
  h = h * jnp.uint32(0x846CA68B)
  return h ^ (h >> 16)


def index_hash(idx: jax.Array, seed0, seed1) -> jax.Array:
  """uint32 bits of uint32 indices `idx` under two uint32 seeds.

  Each seed enters linearly, so two seed pairs give shifted or permuted
  copies of one stream when one seed is equal and the other differs by
  less than the mask size (an add for seed1, an xor for seed0): a chance
  of ~ size / 2^63 per pair of masks for random seeds, as with the
  two-round hash before it.
  """
  return _lowbias32((idx ^ seed0) + seed1)


def hash_bits(key: jax.Array, shape) -> jax.Array:
  """uint32 bits of `shape`, a function of `key` and each element's index."""
  seeds = jax.random.bits(key, (2,), jnp.uint32)
  idx = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
  return index_hash(idx, seeds[0], seeds[1])


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
