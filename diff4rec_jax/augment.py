"""Interaction augmentation (paper section 3.4.1, Algorithm 1 INTERACTAUGMENT).

This module owns the vectorized augmentation kernel: every one of K copies of
every user of a batch in one compiled call, `[B, L] -> [B, K, L]`.

For user u with left-padded sequence S_u (length N, items in the last N
columns), candidates c_u [M] and probabilities p_u [M] from the generator,
copy r is built as in Algorithm 1:

1. Eligible candidates: id > 0, probability > 0, not an item of S_u, and the
   first occurrence of its id in c_u (`dedupe`; the generator's top-M never
   repeats an id, and repeat-free rows give the same copies without the
   check, which `pool.augment_all` skips when `has_repeats(cand)` is False).
   Candidates already in S_u are excluded so that a replacement always
   brings a NEW item (the generator's top-M already excludes the training
   prefix; the kernel does not rely on it).
2. n = round_half_up(ratio * N), at least min(min_replaced, N)
   (`num_replaced`; min_replaced=0 by default), capped at the number of
   eligible candidates E: n_eff = min(n, E). A copy never repeats a candidate
   and never invents items, so a user with fewer than n eligible candidates
   gets only E replacements (E = 0: the copy is just a reordering).
3. n_eff of the N valid positions, uniformly without replacement (Floyd's
   algorithm, n_eff steps), get n_eff distinct candidates drawn successively
   without replacement with probability proportional to p^(1 / temperature)
   (Plackett-Luce: the law Gumbel-top-k samples). Each draw is an inverse-CDF
   lookup in the user's integer CDF with the removed candidates skipped, so
   a copy costs O(n_eff * (n_eff + log M)) and 2 random words a row, where
   Gumbel-top-k would cost M random numbers, 2M logs and a top-k over M per
   copy (over the whole CPU budget at Steam scale). The weights are quantized
   to integers summing to <= 2^24 (each eligible candidate gets >= 1 unit).
4. Reorder (`reorder=True`, the paper's default): the N valid items are put in
   a uniformly random order (one sort of packed uint32 keys: 16 random bits
   above the slot index). `reorder=False` keeps the original order.

Padding stays where it was: the output is left-padded with the same length.
n and everything else data-dependent are masks and ranks over static shapes
(n_max = max n over lengths <= W scan steps, inactive ones masked).

Properties (tested on the kernel and on `augment_reference`, the per-user
numpy version): length kept; exactly n_eff positions differ from S_u as a
multiset; the new items are distinct eligible candidates; the other
N - n_eff items of S_u are kept (as a multiset); padding untouched.

Randomness. User u's key is `fold_in(key, user_id)`; the random words of
copy r are the two threefry output words of `fold_in(user_key, counter)`:
counter q * K + r gives the 16-bit reorder keys of the items 4q .. 4q + 3
from the end, counter 2^31 + s * K + r gives draw step s (16 bits for
Floyd, 24 bits for the candidate). So a copy depends only on (key, user id,
r, K, the user's items and candidates), not on the batch, the batch size,
nor the row width W >= N of the call.
`pool.augment_all` uses this: it groups users by length into widths 8, 16, 32,
..., L so short sequences are not processed at width L, and its output
equals `augment_batch` at width L row by row; `augment_copies` rebuilds any
single copy (u, r). Deviations from exact laws, all tiny: Floyd's 16-bit
draw in [0, j] has relative bias <= (j + 1) / 2^16; two items with equal
16-bit reorder keys (2^-16 a pair) keep their order; candidate
probabilities are exact to ~2^-24 (quantized weights, 24-bit uniforms).

Training use (Eq. 10): an augmented copy S' is trained with next-item
prediction over its own items; `shift_pairs` turns left-padded full sequences
into left-padded (input, target) pairs of the same width. Tip: to get L full
pairs from a width-L model, augment rows of width L + 1 and drop column 0 of
both outputs of `shift_pairs` (it is always 0).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


# Integer sampling weights of one user sum to at most 2^24 so that every
# running mass is exact in both int32 and float32.
_WEIGHT_BITS = 24
_WEIGHT_TOTAL = 1 << _WEIGHT_BITS
# Start of a removed-candidate slot that is not in use (> any CDF value).
_UNUSED = 1 << 30

# -- shared helpers ---------------------------------------------------------
def num_replaced(length, ratio: float, min_replaced: int = 0):
  """n = max(round_half_up(ratio * length), min(min_replaced, length)).

  The positions replaced per copy. Algorithm 1 line 4 writes n = ratio *
  |S_u| and leaves the rounding open: round half up (min_replaced=0)
  replaces nothing in a sequence shorter than 0.5 / ratio items (5 at ratio
  0.1); min_replaced=1 is the usual max(1, .) of sequence augmentations.
  Computed in float64 on the host (exact for the static table the kernel
  embeds); `length` may be an int or an integer array.
  """
  length = np.asarray(length, np.int64)
  n = np.floor(ratio * length.astype(np.float64) + 0.5 + 1e-9)
  return np.maximum(n.astype(np.int64), np.minimum(min_replaced, length))


def _slot_bits(width: int) -> int:
  """Low bits of a packed reorder key that hold a slot index.

  Keys compare as (16 random bits, slot), whatever this width, so the order
  does not depend on W. 1 + 16 + bits <= 32 limits W to 2^15.
  """
  bits = max(1, (int(width) - 1).bit_length())
  if bits > 15:
    raise ValueError(f"sequence width {width} > 32768 is not supported")
  return bits


def shift_pairs(seqs):
  """Left-padded next-item (input, target) pairs of full sequences.

  Input: S[:-1] right-aligned; target: S[1:]; 0 where there is no target.

  Args:
    seqs: [N, L] int32 left-padded sequences (numpy or jax).
  Returns:
    (inputs [N, L], targets [N, L]) of the same array type and dtype.
  """
  xp = jnp if isinstance(seqs, jax.Array) else np
  inputs = xp.concatenate([xp.zeros_like(seqs[:, :1]), seqs[:, :-1]], axis=1)
  targets = xp.where(inputs > 0, seqs, xp.zeros_like(seqs))
  return inputs, targets


# -- the kernel -------------------------------------------------------------
def _prepare_user(seq, cand, prob, temperature, dedupe: bool,
                  exclude_history: bool = True):
  """Eligible candidates of one user and their integer sampling CDF.

  Args:
    seq: [W] int32 the user's row (0 = padding).
    cand: [M] int32 candidate ids; prob: [M] float32 probabilities.
    temperature: scalar; weights are prob ** (1 / temperature).
    dedupe: drop repeats of an id after its first occurrence (static). Rows
      without repeats give the same result either way.
    exclude_history: candidates already in `seq` are not eligible (static;
      False lets a copy bring in a second occurrence of an item it has).
  Returns:
    weights [M] int32 aligned with cand (0 = not eligible), cdf [M] int32
    inclusive cumulative weights, num_eligible.
  """
  m = cand.shape[0]
  ok = (cand > 0) & (prob > 0)
  if exclude_history:
    ok = ok & ~jnp.any(cand[:, None] == seq[None, :], 1)
  if dedupe:
    # Sorting (id, index) packed in one int32 puts repeats after their first
    # occurrence (a two-operand sort runs several times slower on XLA:CPU;
    # [M, M] compares slower still); the flags go back to candidate order.
    bits = max(1, (m - 1).bit_length())
    packed = jnp.sort(jnp.maximum(cand, 0) * (1 << bits) +
                      jnp.arange(m, dtype=jnp.int32))
    ids = packed >> bits
    again = jnp.concatenate([jnp.zeros((1,), bool), ids[1:] == ids[:-1]])
    repeat = jnp.zeros((m,), bool).at[packed & ((1 << bits) - 1)].set(
        again, unique_indices=True)
    ok = ok & ~repeat
  logw = jnp.where(ok, jnp.log(jnp.where(ok, prob, 1.0)) / temperature,
                   -jnp.inf)
  top = jnp.max(logw)
  w = jnp.where(ok, jnp.exp(logw - jnp.where(jnp.isfinite(top), top, 0.0)),
                0.0)
  frac = w / jnp.maximum(jnp.sum(w), 1e-30)
  weights = jnp.where(
      ok, jnp.floor(frac * (_WEIGHT_TOTAL - m)).astype(jnp.int32) + 1, 0)
  # associative_scan: XLA:CPU lowers cumsum to an O(M^2) reduce_window.
  cdf = jax.lax.associative_scan(jnp.add, weights)
  return weights, cdf, jnp.sum(ok.astype(jnp.int32))


def has_repeats(cand: np.ndarray) -> bool:
  """Whether any row of cand [U, M] repeats a nonzero id (host, numpy)."""
  s = np.sort(np.asarray(cand), axis=-1)
  return bool(np.any((s[..., 1:] == s[..., :-1]) & (s[..., 1:] > 0)))


_BLOCK = 16  # block size of the two-level CDF search


def _search(cdf, r):
  """First index c with cdf[c] > r, for r < cdf[-1] ([M] int32, scalar).

  Two levels of compares (block tops, then one block of 16) instead of a
  binary search: no nested loop, ~1.5x faster on XLA:CPU.
  """
  m = cdf.shape[0]
  nb = -(-m // _BLOCK)
  padded = jnp.concatenate(
      [cdf, jnp.full((nb * _BLOCK - m,), jnp.iinfo(jnp.int32).max, cdf.dtype)])
  b = jnp.minimum(jnp.sum((padded[_BLOCK - 1::_BLOCK] <= r).astype(jnp.int32)),
                  nb - 1)
  block = jax.lax.dynamic_slice(padded, (b * _BLOCK,), (_BLOCK,))
  return jnp.minimum(b * _BLOCK + jnp.sum((block <= r).astype(jnp.int32)),
                     m - 1)


def _draw(carry, step, *, length, n_eff, weights, cdf):
  """One replacement: a position (Floyd) and a candidate (Plackett-Luce).

  carry: (pos [n_max] valid indices chosen so far (-1 unused),
          thresh [n_max] where each removed candidate starts in the
            remaining coordinate (its CDF start minus the removed mass
            before it), ascending, _UNUSED beyond,
          masses [n_max] their weights, removed total mass).
  step: (s, word_pos, word_item): the step and its two uint32 words (16
    and 24 high bits used).
  Returns the new carry and the drawn candidate index.
  """
  pos, thresh, masses, removed = carry
  s, word_pos, word_item = step
  active = s < n_eff
  # Floyd: j runs over N - n .. N - 1; t uniform in [0, j].
  j = length - n_eff + s
  t = ((word_pos >> 16) * (j + 1).astype(jnp.uint32)) >> 16
  t = jnp.minimum(t.astype(jnp.int32), j)
  pick = jnp.where(jnp.any(pos == t), j, t)
  pos = pos.at[s].set(jnp.where(active, pick, -1))
  # Inverse CDF over the remaining mass: r in the remaining coordinate maps
  # to r + (mass of the removed candidates that start at or before it).
  rest = cdf[-1] - removed
  u = (word_item >> 8).astype(jnp.float32) * (1.0 / (1 << 24))
  r = jnp.floor(u * rest.astype(jnp.float32)).astype(jnp.int32)
  r = jnp.clip(r, 0, jnp.maximum(rest - 1, 0))
  before = thresh <= r          # removed candidates before the drawn one
  skip = jnp.sum(jnp.where(before, masses, 0))
  c = _search(cdf, r + skip)
  mass = weights[c]
  # Insert c at rank k = #before; those after it move down by its mass.
  k = jnp.sum(before.astype(jnp.int32))
  idx = jnp.arange(thresh.shape[0])
  new_thresh = cdf[c] - mass - skip
  ins = lambda a, v, shift: jnp.where(
      idx < k, a, jnp.where(idx == k, v, jnp.roll(a, 1) - shift))
  thresh = jnp.where(active, ins(thresh, new_thresh, mass), thresh)
  masses = jnp.where(active, ins(masses, mass, 0), masses)
  removed = removed + jnp.where(active, mass, 0)
  return (pos, thresh, masses, removed), c


def _sort_last(x):
  """Ascending sort of a short last axis (uint32).

  A bitonic network of min/max over reshaped halves for widths <= 32 (padded
  to a power of two with the largest key): ~2x faster than XLA:CPU's
  comparator sort on rows this short. Wider rows use jnp.sort.
  """
  n = x.shape[-1]
  if n > 32:
    return jnp.sort(x, axis=-1)
  p = 1 << max(0, (n - 1).bit_length())
  lead = x.shape[:-1]
  if p > n:
    x = jnp.concatenate(
        [x, jnp.full(lead + (p - n,), jnp.iinfo(x.dtype).max, x.dtype)], -1)
  k = 2
  while k <= p:
    # Merge sorted runs of k // 2: compare each element of a run with its
    # mirror in the next run, then half-clean down to pairs.
    y = x.reshape(lead + (p // k, k))
    a, b = y[..., :k // 2], y[..., k // 2:][..., ::-1]
    x = jnp.concatenate([jnp.minimum(a, b), jnp.maximum(a, b)[..., ::-1]],
                        -1).reshape(lead + (p,))
    j = k // 4
    while j >= 1:
      y = x.reshape(lead + (p // (2 * j), 2, j))
      a, b = y[..., 0, :], y[..., 1, :]
      x = jnp.stack([jnp.minimum(a, b), jnp.maximum(a, b)],
                    -2).reshape(lead + (p,))
      j //= 2
    k *= 2
  return x[..., :n]


def _augment_copy(order_bits, draw_words, seq, length, n_eff, items, weights,
                  cdf, *, n_max: int, reorder: bool):
  """One augmented copy of one user.

  Args:
    order_bits: [W] uint32 < 2^16; entry i keys the reorder of the item
      i-th from the end.
    draw_words: [n_max, 2] uint32; row s: Floyd step s (high 16 bits of
      column 0) and candidate draw s (high 24 bits of column 1).
    seq: [W] int32 the user's row; the rest from `_prepare_user`.
  Returns:
    [W] int32 the copy.
  """
  w = seq.shape[0]
  out = seq
  if n_max > 0:
    init = (jnp.full((n_max,), -1, jnp.int32),
            jnp.full((n_max,), _UNUSED, jnp.int32),
            jnp.zeros((n_max,), jnp.int32), jnp.zeros((), jnp.int32))
    draw = functools.partial(_draw, length=length, n_eff=n_eff,
                             weights=weights, cdf=cdf)
    (pos, _, _, _), drawn = jax.lax.scan(
        draw, init, (jnp.arange(n_max), draw_words[:, 0], draw_words[:, 1]))
    # Unused steps (pos -1) point past the row, each elsewhere: dropped.
    at = jnp.where(pos >= 0, pos + (w - length), w + jnp.arange(n_max))
    out = seq.at[at].set(items[drawn], mode="drop", unique_indices=True)
  if reorder:
    # Keys by recency (entry 0 = the last slot) so that a copy does not
    # depend on W. Padding keys (< 2^31) sort first, in slot order; equal
    # 16-bit keys (probability 2^-16 a pair) keep the original order.
    sbits = _slot_bits(w)
    slot = jnp.arange(w, dtype=jnp.uint32)
    key = jnp.where(slot >= (w - length).astype(jnp.uint32),
                    jnp.uint32(1 << 31) | (order_bits[::-1] << sbits) | slot,
                    slot)
    perm = (_sort_last(key) & jnp.uint32((1 << sbits) - 1)).astype(jnp.int32)
    out = out[perm]
  return out


# Counters of the draw words start here (the reorder words use 0, 1, ...).
_DRAW_COUNTER = 1 << 31


def _augment_user(user_key, seq, length, cand, prob, temperature, copy_ids,
                  *, num_copies: int, n_table: np.ndarray, n_max: int,
                  reorder: bool, dedupe: bool, exclude_history: bool = True):
  """Copies `copy_ids` [C] of one user: seq [W] -> [C, W]."""
  w = seq.shape[0]
  c = copy_ids.shape[0]
  length = jnp.clip(length, 0, w).astype(jnp.int32)
  weights, cdf, num_ok = _prepare_user(seq, cand, prob, temperature, dedupe,
                                       exclude_history)
  n_eff = jnp.minimum(jnp.asarray(n_table)[length], num_ok)
  # Random words are the two threefry output words of fold_in(user_key,
  # counter), one vmapped fold_in for all (it compiles ~10x faster on
  # XLA:CPU than split/bits with a multi-dimensional shape). Reorder keys
  # are 16 bits, four a counter: counter q * K + r holds those of the items
  # 4q .. 4q + 3 from the end of copy r. Draw step s of copy r uses counter
  # 2^31 + s * K + r. Hence a copy does not depend on W.
  rows = -(-w // 4)
  copy_ids = copy_ids.astype(jnp.uint32)
  counters = [(jnp.arange(rows, dtype=jnp.uint32)[:, None] * num_copies +
               copy_ids[None, :]).reshape(-1)]
  if n_max:
    steps = jnp.arange(n_max, dtype=jnp.uint32)[:, None]
    counters.append((jnp.uint32(_DRAW_COUNTER) + steps * num_copies +
                     copy_ids[None, :]).reshape(-1))
  words = jax.random.key_data(jax.vmap(jax.random.fold_in, (None, 0))(
      user_key, jnp.concatenate(counters)))
  quads = words[:rows * c].reshape(rows, c, 2)
  order_bits = jnp.stack([quads[..., 0] >> 16, quads[..., 0] & 0xFFFF,
                          quads[..., 1] >> 16, quads[..., 1] & 0xFFFF],
                         axis=1).reshape(rows * 4, c)[:w]
  draw_words = words[rows * c:].reshape(n_max, c, 2)
  one = functools.partial(_augment_copy, seq=seq, length=length, n_eff=n_eff,
                          items=cand, weights=weights, cdf=cdf, n_max=n_max,
                          reorder=reorder)
  return jax.vmap(one, in_axes=(1, 1))(order_bits, draw_words)


def _static_setup(width: int, num_cand: int, num_copies: int, ratio: float,
                  min_replaced: int = 0):
  """Checks static arguments; the n table [W+1] and its max."""
  if (not isinstance(num_copies, int) or isinstance(num_copies, bool)
      or num_copies < 1):
    raise ValueError(f"num_copies must be an integer >= 1, got {num_copies}")
  if not 0.0 <= ratio <= 1.0:
    raise ValueError(f"ratio must be in [0, 1], got {ratio}")
  if (not isinstance(min_replaced, int) or isinstance(min_replaced, bool)
      or min_replaced < 0):
    raise ValueError(f"min_replaced must be an integer >= 0, got "
                     f"{min_replaced}")
  _slot_bits(width)
  n_table = np.minimum(num_replaced(np.arange(width + 1), ratio, min_replaced),
                       num_cand).astype(np.int32)
  return n_table, int(n_table.max())


def _user_keys(key, user_ids):
  return jax.vmap(jax.random.fold_in, (None, 0))(
      key, jnp.asarray(user_ids).astype(jnp.uint32))


@functools.partial(jax.jit, static_argnames=("num_copies", "ratio", "reorder",
                                             "dedupe", "exclude_history",
                                             "min_replaced"))
def augment_batch(key, seqs, lengths, cand, prob, *, num_copies: int,
                  ratio: float, temperature=1.0, reorder: bool = True,
                  user_ids=None, dedupe: bool = True,
                  exclude_history: bool = True, min_replaced: int = 0):
  """All K augmented copies of a batch of users, in one compiled call.

  Args:
    key: a jax.random key.
    seqs: [B, W] int32 left-padded sequences (items in the last `lengths`
      columns; item ids 1-based).
    lengths: [B] int number of items of each row (clipped to [0, W]).
    cand: [B, M] int32 candidate ids (0 = padding); with dedupe, ids <
      2^31 / 2^ceil(log2 M) (the packed sort of `_prepare_user`).
    prob: [B, M] float32 candidate probabilities (0 = never drawn).
    num_copies: K (static).
    ratio: fraction of a sequence replaced, in [0, 1] (static).
    temperature: sampling weights are prob ** (1 / temperature); traced.
    reorder: shuffle the items of each copy (static).
    user_ids: [B] int ids folded into `key` per user; default arange(B).
      Pass global ids to make copies independent of batching.
    dedupe: ignore repeats of a candidate id in a row (static). Costs a sort
      of M per user; rows without repeats (the generator's top-M) give the
      same copies with dedupe=False.
    exclude_history: candidates already in the row are not eligible
      (static; `augment.exclude_history`, default True).
    min_replaced: a copy replaces at least min(min_replaced, N) items
      (static; `augment.min_replaced`, default 0; `num_replaced`).
  Returns:
    [B, K, W] int32 copies, left-padded like `seqs`.
  """
  b, w = seqs.shape
  n_table, n_max = _static_setup(w, cand.shape[1], num_copies, ratio,
                                 min_replaced)
  if user_ids is None:
    user_ids = jnp.arange(b, dtype=jnp.uint32)
  one = functools.partial(_augment_user, num_copies=num_copies,
                          n_table=n_table, n_max=n_max, reorder=reorder,
                          dedupe=dedupe, exclude_history=exclude_history)
  return jax.vmap(one, (0, 0, 0, 0, 0, None, None))(
      _user_keys(key, user_ids), seqs.astype(jnp.int32), lengths,
      cand.astype(jnp.int32), prob.astype(jnp.float32),
      jnp.asarray(temperature, jnp.float32),
      jnp.arange(num_copies, dtype=jnp.uint32))


@functools.partial(jax.jit, static_argnames=("num_copies", "ratio", "reorder",
                                             "dedupe", "exclude_history",
                                             "min_replaced"))
def augment_copies(key, seqs, lengths, cand, prob, user_ids, copy_ids, *,
                   num_copies: int, ratio: float, temperature=1.0,
                   reorder: bool = True, dedupe: bool = True,
                   exclude_history: bool = True, min_replaced: int = 0):
  """Selected copies, one a row: copy `copy_ids[n]` of user `user_ids[n]`.

  Regenerates exactly `augment_batch(...)[u, r]` (same key, K, ratio,
  min_replaced, temperature, reorder) without computing the user's other
  copies, so a training step can rebuild the copies the curriculum samples
  instead of keeping all U x K x L of them in memory.

  Args:
    seqs: [N, W], lengths: [N], cand: [N, M], prob: [N, M]: each row's
      user's data; user_ids: [N]; copy_ids: [N] in [0, K).
  Returns:
    [N, W] int32.
  """
  n, w = seqs.shape
  n_table, n_max = _static_setup(w, cand.shape[1], num_copies, ratio,
                                 min_replaced)
  one = functools.partial(_augment_user, num_copies=num_copies,
                          n_table=n_table, n_max=n_max, reorder=reorder,
                          dedupe=dedupe, exclude_history=exclude_history)
  out = jax.vmap(one, (0, 0, 0, 0, 0, None, 0))(
      _user_keys(key, user_ids), seqs.astype(jnp.int32), lengths,
      cand.astype(jnp.int32), prob.astype(jnp.float32),
      jnp.asarray(temperature, jnp.float32),
      jnp.asarray(copy_ids).astype(jnp.uint32)[:, None])
  return out[:, 0]


# -- host drivers -----------------------------------------------------------
# The drivers run each compiled call data-parallel over a 1-D ('data',) mesh
# (`sharding.make_mesh()` unless given): the per-user arrays of a batch are
# sharded on B, the key and embeddings replicated. Every user's result is a
# function of its own row (and key), so it is the same on any device count.
# -- the numpy reference ----------------------------------------------------
def augment_reference(rng: np.random.Generator, seqs, lengths, cand, prob, *,
                      num_copies: int, ratio: float, temperature: float = 1.0,
                      reorder: bool = True, exclude_history: bool = True,
                      min_replaced: int = 0) -> np.ndarray:
  """Algorithm 1 INTERACTAUGMENT, one user and one copy at a time (numpy).

  Same rules as the kernel with float64 weights and numpy's generator:
  eligible candidates (first occurrence, id > 0, prob > 0, not in the
  sequence), n capped at their number, positions uniform without
  replacement, candidates drawn without replacement with probability ~
  prob ** (1 / temperature) (numpy's weighted choice without replacement
  is successive sampling, the kernel's law), then a uniform shuffle.

  Returns:
    [B, K, L] int32.
  """
  seqs = np.asarray(seqs)
  b, l = seqs.shape
  out = np.zeros((b, num_copies, l), np.int32)
  for i in range(b):
    n_items = int(min(lengths[i], l))
    items = seqs[i, l - n_items:]
    ids, first = np.unique(np.asarray(cand[i]), return_index=True)
    p = np.asarray(prob[i], np.float64)[first]
    ok = (ids > 0) & (p > 0)
    if exclude_history:
      ok &= ~np.isin(ids, items)
    ids, p = ids[ok], p[ok]
    if len(p):
      p = np.exp((np.log(p) - np.log(p).max()) / temperature)
      p /= p.sum()
    n = min(int(num_replaced(n_items, ratio, min_replaced)), len(ids))
    for r in range(num_copies):
      copy = items.copy()
      if n:
        copy[rng.choice(n_items, n, replace=False)] = ids[
            rng.choice(len(ids), n, replace=False, p=p)]
      if reorder:
        rng.shuffle(copy)
      out[i, r, l - n_items:] = copy
  return out
