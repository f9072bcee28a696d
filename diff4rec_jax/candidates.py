"""Control candidate sets for the augmentation kernel (no generator).

The Diff4Rec generator hands the kernel M candidates per user with their
probabilities (`generator.generate_topm`). To tell what the diffusion adds,
the same kernel can be fed by simpler sources (`augment.candidates`):

* 'popular': the M most frequent training items the user has not seen
  (`exclude_history`; else the M most frequent of all), with
  probabilities proportional to their training counts (ties: lower id first).
* 'uniform': M items drawn uniformly without replacement among those the
  user has not seen and that occur in training, with equal probabilities.

(The VAE alone, the third control, is the generator with
`generator.inference_step=0`: mu(x_u) decoded without corruption.)

One more source is another trained recommender ('teacher', train.py's
`teacher_candidates`: its top-M unseen items after each user's training
prefix); `softmax_topm` turns its scores into the kernel's probabilities.

Arrays in, arrays out; numpy on the host, once per run, in blocks of users
so memory stays O(block x items).
"""

from __future__ import annotations

import numpy as np

KINDS = ("popular", "uniform")
_BLOCK = 1024   # users per block; part of the 'uniform' draw (fixed)


def item_counts(items: np.ndarray, num_items: int) -> np.ndarray:
  """Occurrences of each item id in `items`: [num_items + 1] int64."""
  return np.bincount(items, minlength=num_items + 1).astype(np.int64)


def control_topm(kind: str, indptr: np.ndarray, items: np.ndarray,
                 counts: np.ndarray, top_m: int, seed: int = 0,
                 exclude_history: bool = True):
  """Top-M candidates per user from a control source.

  Args:
    kind: 'popular' or 'uniform'.
    indptr, items: CSR [U + 1], [n] of each user's training-prefix items
      (the items that are never candidates).
    counts: [N + 1] training occurrences per item id (column 0 unused):
      items with count 0 are never candidates.
    top_m: M.
    seed: the 'uniform' draw's seed (user u's draw depends on the seed and
      u only, through its block of `_BLOCK` users).
    exclude_history: False lets the user's own items be candidates too.
  Returns:
    items [U, M] int32 (0 where fewer than M items are left), probs [U, M]
    float32 (0 there); each row sorted by probability, descending.
  """
  if kind not in KINDS:
    raise ValueError(f"augment.candidates: {kind!r} is not one of {KINDS}")
  num_users, width = len(indptr) - 1, len(counts)
  m = min(top_m, width - 1)
  out_items = np.zeros((num_users, top_m), np.int32)
  out_probs = np.zeros((num_users, top_m), np.float32)
  eligible = counts > 0
  eligible[0] = False
  pop = counts.astype(np.float64)
  # Popularity rank as the score: ties broken by the lower id.
  pop_score = np.empty(width, np.float64)
  pop_score[np.lexsort((np.arange(width), -pop))] = -np.arange(width)
  for b0 in range(0, num_users, _BLOCK):
    b1 = min(num_users, b0 + _BLOCK)
    seen = np.zeros((b1 - b0, width), bool)
    lo, hi = indptr[b0], indptr[b1]
    rows = np.repeat(np.arange(b1 - b0), np.diff(indptr[b0:b1 + 1]))
    if exclude_history:
      seen[rows, items[lo:hi]] = True
    ok = eligible[None, :] & ~seen                       # [b, N + 1]
    if kind == "popular":
      score = np.broadcast_to(pop_score, ok.shape)
      mass = np.where(ok, pop[None, :], 0.0)
    else:
      rng = np.random.default_rng([seed, 13, b0 // _BLOCK])
      score = rng.random(ok.shape)
      mass = ok.astype(np.float64)
    score = np.where(ok, score, -np.inf)
    top = np.argpartition(-score, m - 1, axis=1)[:, :m]
    top = np.take_along_axis(
        top, np.argsort(-np.take_along_axis(score, top, 1), axis=1,
                        kind="stable"), 1)
    valid = np.isfinite(np.take_along_axis(score, top, 1))
    total = np.maximum(mass.sum(axis=1, keepdims=True), 1e-30)
    probs = np.take_along_axis(mass, top, 1) / total
    out_items[b0:b1, :m] = np.where(valid, top, 0)
    out_probs[b0:b1, :m] = np.where(valid, probs, 0.0)
  return out_items, out_probs


def softmax_topm(scores: np.ndarray) -> np.ndarray:
  """Probabilities [U, M] float32 of top-M scores [U, M] (-inf where a row
  has fewer than M items): a softmax over each row's finite scores, 0
  elsewhere (a row without any is all 0)."""
  scores = np.asarray(scores, np.float64)
  ok = np.isfinite(scores)
  top = np.max(np.where(ok, scores, -np.inf), axis=1, keepdims=True)
  e = np.where(ok, np.exp(scores - np.where(np.isfinite(top), top, 0.0)),
               0.0)
  total = e.sum(axis=1, keepdims=True)
  return np.where(total > 0, e / np.maximum(total, 1e-300), 0.0).astype(
      np.float32)
