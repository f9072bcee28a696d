"""Full-ranking evaluation: HR@k, NDCG@k and MRR over all items.

Every user's target is ranked against every item (no sampled negatives).
Scores are computed on device in fixed-size item chunks inside one
`lax.scan`, so memory is O(batch x chunk) for scores, plus a bitset of the
users' histories (O(batch x items / 32) 32-bit words, built on the host by
`history_words`).

Rank definition (0-based) of the target t of a user with hidden state h:

    rank = #{ i in 1..N : i != t, i not masked, score_i >= score_t }

* Ties are ranked pessimistically: an item with a score equal to the
  target's is counted ahead of it (a constant model ranks every target
  last, never first). Scores are compared as float32 values as computed.
* Masked items: the padding id 0, and with `mask_history` every item of the
  user's input history (the items before the target, the target itself
  excepted: a repeat of the target is still a hit).

From the rank: HR@k = [rank < k], NDCG@k = [rank < k] / log2(rank + 2),
MRR = 1 / (rank + 1); each averaged over users.

The same chunked scan serves recommendations: `top_k_unseen` keeps the k
best allowed items of each row (item 0, ids above N and the row's `seen`
bitset excluded; a row with fewer than k allowed items ends in score -inf,
item 0), so memory is O(batch x (chunk + k)) whatever the number of items;
`candidate_scores` scores given items. Scores are the recommender's logits
(hidden state . item embedding), the quantity its training loss ranks by.
The generator, whose decoder scores all items at once, ranks its
validation targets with `rank_of_target` (same tie rule) and `hr_ndcg`.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

KS = (5, 10, 20)
METRIC_NAMES = tuple([f"HR@{k}" for k in KS] + [f"NDCG@{k}" for k in KS] +
                     ["MRR"])


def padded_num_items(num_items: int, chunk: int) -> int:
  """Rows of the item table after padding to a whole number of chunks."""
  return int(math.ceil((num_items + 1) / chunk) * chunk)


def num_words(num_items: int) -> int:
  """32-bit words of a bitset over item ids 0..N."""
  return (num_items + 1 + 31) // 32


def history_words(row_of: np.ndarray, items: np.ndarray, num_rows: int,
                  num_items: int) -> np.ndarray:
  """Host-side bitset of each row's items (numpy, built once per batch).

  Args:
    row_of: [h] int, the row (0..num_rows-1) of each entry.
    items: [h] int item ids in 1..N, unique within a row.
    num_rows: R.
    num_items: N.
  Returns:
    [R, W] uint32, W = num_words(N), bit (i % 32) of word (i // 32) set for
    item i. Built with one bincount (distinct bits add exactly in float64),
    so the device never scatters.
  """
  w = num_words(num_items)
  items = np.asarray(items, np.int64)
  flat = np.asarray(row_of, np.int64) * w + items // 32
  bits = np.left_shift(np.int64(1), items % 32).astype(np.float64)
  words = np.bincount(flat, weights=bits, minlength=num_rows * w)
  return words.astype(np.uint32).reshape(num_rows, w)


def target_ranks(hidden: jax.Array, table: jax.Array, targets: jax.Array,
                 hist_words: jax.Array | None, num_items: int,
                 chunk: int) -> jax.Array:
  """0-based pessimistic rank of each target among all items.

  Args:
    hidden: [B, D] float user states.
    table: [N + 1, D] item embeddings (row 0 = padding).
    targets: [B] int32 target ids in 1..N.
    hist_words: [B, W] uint32 bitset of the history items to mask
      (`history_words`, W = num_words(N)), or None.
    num_items: N.
    chunk: C, items scored at once (a multiple of 32).
  Returns:
    [B] int32 ranks.
  """
  if chunk % 32:
    raise ValueError(f"eval item chunk must be a multiple of 32, got {chunk}")
  b = hidden.shape[0]
  n_pad = padded_num_items(num_items, chunk)
  table = jnp.pad(table, ((0, n_pad - table.shape[0]), (0, 0)))
  s_t = jnp.sum(hidden * table[targets], axis=-1)               # [B]
  words = (jnp.pad(hist_words,
                   ((0, 0), (0, n_pad // 32 - hist_words.shape[1])))
           if hist_words is not None else None)
  lane = jnp.arange(chunk, dtype=jnp.int32)

  def body(count, c):
    start = c * chunk
    tab = jax.lax.dynamic_slice_in_dim(table, start, chunk, axis=0)
    s = hidden @ tab.T                                          # [B, C]
    ids = start + lane
    ok = (ids >= 1) & (ids <= num_items)
    ok = ok[None, :] & (ids[None, :] != targets[:, None])
    if words is not None:
      w = jax.lax.dynamic_slice_in_dim(words, start // 32, chunk // 32, 1)
      bits = jnp.right_shift(w[:, :, None],
                             jnp.arange(32, dtype=jnp.uint32)) & 1
      ok = ok & (bits.reshape(b, chunk) == 0)
    return count + jnp.sum(ok & (s >= s_t[:, None]), axis=1,
                           dtype=jnp.int32), None

  ranks, _ = jax.lax.scan(body, jnp.zeros(b, jnp.int32),
                          jnp.arange(n_pad // chunk))
  return ranks


def metrics_from_ranks(ranks: jax.Array, weights: jax.Array,
                       ks: Sequence[int] = KS) -> dict:
  """Weighted sums of HR@k, NDCG@k, MRR and the weight total ('count')."""
  r = ranks.astype(jnp.float32)
  out = {}
  for k in ks:
    hit = (ranks < k).astype(jnp.float32)
    out[f"HR@{k}"] = jnp.sum(hit * weights)
    out[f"NDCG@{k}"] = jnp.sum(hit / jnp.log2(r + 2.0) * weights)
  out["MRR"] = jnp.sum(weights / (r + 1.0))
  out["count"] = jnp.sum(weights)
  return out


def finalize(sums: dict) -> dict:
  """Averages accumulated sums into metrics (python floats)."""
  sums = jax.device_get(sums)
  n = float(sums["count"])
  return {k: float(sums[k]) / max(n, 1.0) for k in METRIC_NAMES}


def numpy_ranks(scores: np.ndarray, targets: np.ndarray,
                history: Sequence[np.ndarray] | None) -> np.ndarray:
  """Reference ranks from a dense score matrix (for tests and small checks).

  Args:
    scores: [B, N + 1] float scores (column 0 = padding).
    targets: [B] target ids.
    history: per row, item ids to mask (target excepted), or None.
  """
  scores = np.array(scores, dtype=np.float64, copy=True)
  b = scores.shape[0]
  scores[:, 0] = -np.inf
  if history is not None:
    for row in range(b):
      h = np.asarray(history[row], dtype=np.int64)
      h = h[(h > 0) & (h != targets[row])]
      scores[row, h] = -np.inf
  s_t = scores[np.arange(b), targets]
  ahead = scores >= s_t[:, None]
  ahead[np.arange(b), targets] = False
  return ahead.sum(axis=1)


# -- serving: the top k unseen items of each user ---------------------------
def top_k_unseen(hidden: jax.Array, table: jax.Array,
                 seen_words: jax.Array | None, num_items: int, k: int,
                 chunk: int):
  """The k highest-scoring allowed items of each row.

  Args:
    hidden: [B, D] user states (the model's output at the newest position).
    table: [N + 1, D] item embeddings (row 0 = padding).
    seen_words: [B, W] uint32 bitset of items to exclude (W =
      metrics.num_words(N)), or None to exclude only padding.
    num_items: N.
    k: items per row (static), 1 <= k.
    chunk: C, items scored at once (a multiple of 32).
  Returns:
    (scores [B, k] float32 descending, items [B, k] int32); ties go to the
    smaller item id.
  """
  if chunk % 32:
    raise ValueError(f"item chunk must be a multiple of 32, got {chunk}")
  b = hidden.shape[0]
  n_pad = padded_num_items(num_items, chunk)
  table = jnp.pad(table, ((0, n_pad - table.shape[0]), (0, 0)))
  hidden = hidden.astype(jnp.float32)
  words = (jnp.pad(seen_words,
                   ((0, 0), (0, n_pad // 32 - seen_words.shape[1])))
           if seen_words is not None else None)
  lane = jnp.arange(chunk, dtype=jnp.int32)

  def body(carry, c):
    best_s, best_i = carry                                      # [B, k]
    start = c * chunk
    tab = jax.lax.dynamic_slice_in_dim(table, start, chunk, axis=0)
    s = hidden @ tab.astype(jnp.float32).T                      # [B, C]
    ids = start + lane
    ok = jnp.broadcast_to(((ids >= 1) & (ids <= num_items))[None, :],
                          (b, chunk))
    if words is not None:
      w = jax.lax.dynamic_slice_in_dim(words, start // 32, chunk // 32, 1)
      bits = jnp.right_shift(w[:, :, None],
                             jnp.arange(32, dtype=jnp.uint32)) & 1
      ok = ok & (bits.reshape(b, chunk) == 0)
    s = jnp.where(ok, s, -jnp.inf)
    cat_s = jnp.concatenate([best_s, s], axis=1)                # [B, k + C]
    cat_i = jnp.concatenate(
        [best_i, jnp.broadcast_to(jnp.where(ok, ids, 0), (b, chunk))], 1)
    top_s, pos = jax.lax.top_k(cat_s, k)
    return (top_s, jnp.take_along_axis(cat_i, pos, axis=1)), None

  init = (jnp.full((b, k), -jnp.inf, jnp.float32), jnp.zeros((b, k),
                                                             jnp.int32))
  (scores, items), _ = jax.lax.scan(body, init, jnp.arange(n_pad // chunk))
  return scores, jnp.where(jnp.isfinite(scores), items, 0)


def candidate_scores(hidden: jax.Array, table: jax.Array,
                     candidates: jax.Array) -> jax.Array:
  """Scores [B, C] float32 of candidate items [B, C] int32 (0 = padding,
  scored -inf) for user states hidden [B, D]."""
  emb = table[candidates].astype(jnp.float32)                   # [B, C, D]
  s = jnp.einsum("bd,bcd->bc", hidden.astype(jnp.float32), emb)
  return jnp.where(candidates > 0, s, -jnp.inf)


# -- dense scores (the generator's validation) ------------------------------
def rank_of_target(scores: jax.Array, targets: jax.Array) -> jax.Array:
  """0-based rank of each target among all items, ties pessimistic.

  rank = #{i != t : score_i >= score_t}; masked items must hold -inf (they
  never reach a finite target score).

  Args:
    scores: [B, N + 1] float.
    targets: [B] int32 item ids.
  Returns:
    [B] int32.
  """
  t = jnp.take_along_axis(scores, targets[:, None], axis=-1)  # [B, 1]
  return (jnp.sum(scores >= t, axis=-1) - 1).astype(jnp.int32)


def hr_ndcg(ranks: np.ndarray, k: int) -> dict:
  """{HR@k, NDCG@k} means (float64 on the host) of 0-based ranks [B]."""
  ranks = np.asarray(ranks, dtype=np.float64)
  hit = ranks < k
  return {f"HR@{k}": float(hit.mean()),
          f"NDCG@{k}": float(np.where(hit, 1.0 / np.log2(ranks + 2.0),
                                      0.0).mean())}
