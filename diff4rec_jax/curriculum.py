"""The curriculum (paper section 3.4.3, Eq. 11, Algorithm 1 lines 10-20).

This module owns the difficulty of every augmented copy, computed once up
front, and the easy-to-hard schedule that admits copies during training.

Difficulty (Eq. 11). Sim_{u,r} = cos(mean_emb(S_u), mean_emb(S'_{u,r})),
the cosine between the mean item embeddings of the original sequence and of
copy r, padding (id 0) excluded from both means. Cosine is scale-invariant,
so the kernel uses sums instead of means (same value). A sequence with no
items has Sim = 0. `similarity` scores a batch `[B, L]` x `[B, K, L]` in one
compiled call; `pool.similarity_all` runs it over all users (and
`pool.score_all` fuses it with the augmentation kernel, keeping only the
[U, K] similarities, for datasets where U x K x L copies do not fit in
memory). The embeddings come from a base recommender
(`config.augment.similarity_source`: 'warmup' trains one first, 'checkpoint'
loads one); the caller may re-score with the current model every
`rescore_every` epochs.

Pool. The U x K copies form one pool of P = U * K entries, flat index
u * K + r. `pool_order` sorts it easy to hard (high similarity first, ties by
index, NaN last), over the whole pool (`scope='global'`) or in rounds
(`scope='per_user'`): every user's easiest copy first, then every user's
second easiest, ... (each round sorted by similarity). Algorithm 1 line 18
indexes the sort by the copy r alone, which reads as the latter; a global
sort also favours users whose copies are all similar (a mean over a long
sequence moves little when a fraction of it is replaced), so an early
pacing stage sees only some users.

Pacing. Training progress p in [0, 1] (step / total steps) maps to the
admitted fraction of the pool by a pure function (jnp, traceable):

  q = min(p / end, 1)                     # all copies admitted at p >= end
  linear: start + (1 - start) * q
  root:   sqrt(start^2 + (1 - start^2) * q)   (Platanios et al., NAACL 2019)
  step:   start + (1 - start) * floor(q * stages) / stages
  none:   1 (no curriculum: the paper's "w/o cur", mode 'aug')

All are nondecreasing, equal `start` at p = 0 and 1 at p >= end.
`admitted_count` turns the fraction into a count in [1, P].

Sampling. Each step draws a FIXED number of copies uniformly (with
replacement) from the first `admitted_count` entries of the sorted pool:
`sample_admitted(key, order, admitted_count, num)`. The count is a traced
scalar and the pool a fixed [P] array, so the step never recompiles as the
admitted set grows. Mode 'aug' uses the same sampler with admitted_count = P
(the order is then irrelevant). Algorithm 1 line 18 pops copies from the
easy end; sampling uniformly from the admitted prefix is the usual
competence-based form of it and keeps every step the same shape.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


PACING_KINDS = ("linear", "root", "step", "none")


# -- similarity (Eq. 11) ----------------------------------------------------
def _bag(item_emb, ids):
  """Sum of the embeddings of the nonzero ids: [..., L] -> [..., D].

  `item_emb` must have row 0 zeroed (padding adds nothing). A loop over the
  L positions gathers [..., D] at a time: on XLA:CPU this is ~20x faster
  than materializing the [..., L, D] gather and reducing it.
  """
  def add(i, acc):
    col = jax.lax.dynamic_index_in_dim(ids, i, axis=ids.ndim - 1,
                                       keepdims=False)
    return acc + item_emb.at[col].get(mode="promise_in_bounds")
  init = jnp.zeros(ids.shape[:-1] + item_emb.shape[1:], item_emb.dtype)
  return jax.lax.fori_loop(0, ids.shape[-1], add, init)


def _cosine(a, b, eps=1e-12):
  """Cosine along the last axis; 0 where either vector is 0."""
  num = jnp.sum(a * b, axis=-1)
  den = jnp.sqrt(jnp.sum(a * a, axis=-1) * jnp.sum(b * b, axis=-1))
  return jnp.where(den > eps, num / jnp.maximum(den, eps), 0.0)


@jax.jit
def similarity(item_emb, orig, copies):
  """Sim of Eq. 11 for every copy of a batch.

  Args:
    item_emb: [N+1, D] float item embeddings (row 0 = padding, ignored).
    orig: [B, L] int32 left-padded original sequences.
    copies: [B, K, L] int32 their augmented copies.
  Returns:
    [B, K] float32 cosine of mean embeddings, padding excluded.
  """
  item_emb = item_emb.astype(jnp.float32).at[0].set(0.0)
  orig = jnp.clip(orig, 0, item_emb.shape[0] - 1)
  copies = jnp.clip(copies, 0, item_emb.shape[0] - 1)
  a = _bag(item_emb, orig)      # [B, D]
  b = _bag(item_emb, copies)    # [B, K, D]
  return _cosine(a[:, None, :], b)


# -- the pool and its order -------------------------------------------------
SCOPES = ("global", "per_user")
DIRECTIONS = ("easy_first", "hard_first")


def pool_order(sim: np.ndarray, scope: str = "global",
               direction: str = "easy_first") -> np.ndarray:
  """Flat pool indices u * K + r in curriculum order.

  Args:
    sim: [U, K] similarities.
    scope: 'global': one sort of all U * K copies; 'per_user': rounds, round
      j holding every user's (j+1)-th copy in `direction`, rounds in order
      and each round sorted the same way.
    direction: 'easy_first' (the paper: highest similarity first) or
      'hard_first' (lowest first; a control for the curriculum's effect).
  Returns:
    [U * K] int32: in `direction`, ties by index, NaN last (within a round
    for 'per_user').
  """
  if direction not in DIRECTIONS:
    raise ValueError(f"direction must be one of {DIRECTIONS}, "
                     f"got {direction!r}")
  sim = np.asarray(sim, np.float64)
  flat = sim.ravel()
  key = -flat if direction == "easy_first" else flat
  key = np.where(np.isnan(flat), np.inf, key)
  if scope == "global":
    return np.argsort(key, kind="stable").astype(np.int32)
  if scope != "per_user":
    raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
  u, k = sim.shape
  # Rank of each copy among its user's K copies (0 = first admitted).
  within = np.argsort(key.reshape(u, k), axis=1, kind="stable")
  rank = np.empty_like(within)
  np.put_along_axis(rank, within, np.arange(k)[None, :], axis=1)
  return np.lexsort((key, rank.ravel())).astype(np.int32)


def split_index(index, num_copies: int):
  """Flat pool index -> (user [..], copy [..])."""
  return index // num_copies, index % num_copies


# -- pacing -----------------------------------------------------------------
def admitted_fraction(p, kind: str, start: float, end: float = 1.0,
                      stages: int = 4):
  """Fraction of the sorted pool admitted at training progress p.

  Args:
    p: progress in [0, 1] (scalar or array, may be traced).
    kind: 'linear' | 'root' | 'step' | 'none' (static).
    start: fraction admitted at p = 0, in (0, 1].
    end: progress at which everything is admitted, in (0, 1].
    stages: number of equal increments of 'step'.
  Returns:
    float32 array shaped like p, nondecreasing in p, in [start, 1].
  """
  if kind not in PACING_KINDS:
    raise ValueError(f"pacing kind must be one of {PACING_KINDS}, got "
                     f"{kind!r}")
  p = jnp.asarray(p, jnp.float32)
  q = jnp.clip(p / end, 0.0, 1.0)
  if kind == "linear":
    f = start + (1.0 - start) * q
  elif kind == "root":
    f = jnp.sqrt(start * start + (1.0 - start * start) * q)
  elif kind == "step":
    f = start + (1.0 - start) * jnp.floor(q * stages) / stages
  else:
    f = jnp.ones_like(q)
  return jnp.clip(f, start if kind != "none" else 1.0, 1.0)


def admitted_count(p, pool_size: int, kind: str, start: float,
                   end: float = 1.0, stages: int = 4):
  """ceil(fraction * P) clipped to [1, P], int32 (traceable in p)."""
  f = admitted_fraction(p, kind, start, end, stages)
  n = jnp.ceil(f * jnp.float32(pool_size)).astype(jnp.int32)
  return jnp.clip(n, 1, pool_size)


# -- sampling ---------------------------------------------------------------
def sample_admitted(key, order, admitted_count, num: int):
  """`num` pool indices drawn uniformly from the first admitted_count.

  Args:
    key: jax.random key (fold the step in before calling).
    order: [P] int32 sorted pool (`pool_order`).
    admitted_count: int in [1, P] (Python int or int array; cast to an
      int32 array here, so every value shares one compilation).
    num: copies per step (static).
  Returns:
    [num] int32 flat pool indices (with replacement).
  """
  return _sample_admitted(key, order, jnp.asarray(admitted_count, jnp.int32),
                          num)


@functools.partial(jax.jit, static_argnames=("num",))
def _sample_admitted(key, order, admitted_count, num: int):
  n = jnp.clip(admitted_count, 1, order.shape[0])
  j = jax.random.randint(key, (num,), 0, n)
  return order[j]
