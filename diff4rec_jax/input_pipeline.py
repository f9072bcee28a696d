"""Host-side (numpy) batches: fixed shapes, a function of (seed, epoch).

The recommender's batches (`EvalSet`, `train_batches`): bucketed by
sequence length; evaluation batches cover every user (the last one padded
and masked). The generator's (`train_rows`, `epoch_batches`, `make_batch`):
each user's training-prefix items as a sparse row, packed into flat bags of
a static token budget. Training batches are a function of (seed, epoch)
only, so a resumed run sees the same ones.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np

from diff4rec_jax import data as data_lib
from diff4rec_jax import metrics as metrics_lib


@dataclasses.dataclass
class EvalSet:
  """Fixed-shape evaluation arrays of one split for all users."""
  inputs: np.ndarray       # [U, L] int32
  targets: np.ndarray      # [U] int32
  hist_indptr: np.ndarray  # [U + 1] int64
  hist_items: np.ndarray   # [h] int32
  num_items: int           # N: batches carry [B, num_words(N)] bitsets

  @classmethod
  def build(cls, ds: data_lib.SequenceData, split: str, max_len: int):
    inputs, targets = ds.eval_arrays(split, max_len)
    indptr, items = ds.history_csr(split)
    return cls(inputs, targets, indptr, items, ds.num_items)

  def batches(self, batch_size: int, widths: np.ndarray,
              local: slice = slice(None)):
    """Yields padded batches covering every user exactly once.

    Users go in order of history length so that each batch can be cut to
    the narrowest bucket width that holds its longest input (the models'
    outputs do not depend on the amount of left padding); one compile per
    width in use. `local`: only these rows of each global batch are built
    (a process's share, `sharding.local_slice`); the width is still that of
    the global batch.
    """
    u = len(self.targets)
    lengths = (self.inputs > 0).sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, u, batch_size):
      pos = np.arange(start, start + batch_size)
      weights = (pos < u).astype(np.float32)
      rows = order[np.minimum(pos, u - 1)]
      width = int(widths[np.searchsorted(widths, lengths[rows].max())])
      rows, weights = rows[local], weights[local]
      row_of, items = data_lib.csr_entries(self.hist_indptr, self.hist_items,
                                           rows)
      yield {
          "inputs": self.inputs[rows, -width:],
          "targets": self.targets[rows],
          "history": metrics_lib.history_words(row_of, items, len(rows),
                                               self.num_items),
          "weights": weights,
      }


def bucket_widths(config, split: str = "train") -> np.ndarray:
  """Sorted sequence widths used for batches; the last one is max_len.

  split 'train': `train.length_buckets`; 'eval': `train.eval_length_buckets`
  (evaluation batches; () = the training ones). Evaluation results do not
  depend on the widths (`EvalSet.batches`), only its speed does.
  """
  max_len = config.data.max_len
  buckets = config.train.length_buckets
  if split == "eval" and config.train.get("eval_length_buckets", ()):
    buckets = config.train.eval_length_buckets
  ws = {int(w) for w in buckets if 0 < int(w) < max_len}
  return np.array(sorted(ws) + [max_len], dtype=np.int64)


def train_batches(inputs: np.ndarray, targets: np.ndarray, rows: np.ndarray,
                  batch_size: int, seed: int, epoch: int,
                  widths: np.ndarray, local: slice = slice(None)):
  """Shuffled fixed-size batches of `rows` for one epoch.

  Rows are grouped by length bucket (`widths`, ascending, last = L); each
  batch holds rows of one bucket cut to that bucket's width, the last batch
  of a bucket padded with empty rows (no targets). The order of rows and of
  batches is a function of (seed, epoch) only, so a resumed run replays it,
  and every process of a multi-host run plans the same batches; each builds
  only the `local` rows of each (its `sharding.local_slice`).

  Yields:
    {'inputs': [b, W] int32, 'targets': [b, W] int32}, W in `widths`,
    b = the rows of `local` (B by default).
  """
  rng = np.random.default_rng([seed, epoch])
  bucket = row_buckets(inputs, rows, widths)
  perm = rng.permutation(len(rows))
  perm = perm[np.argsort(bucket[perm], kind="stable")]
  plan = []
  for b in np.unique(bucket):
    members = rows[perm[bucket[perm] == b]]
    steps = -(-len(members) // batch_size)
    members = np.concatenate(
        [members, np.full(steps * batch_size - len(members), -1)])
    plan += [(int(widths[b]), members[i * batch_size:(i + 1) * batch_size])
             for i in range(steps)]
  for i in rng.permutation(len(plan)):
    width, idx = plan[i]
    idx = idx[local]
    live = (idx >= 0)[:, None]
    idx = np.maximum(idx, 0)
    yield {"inputs": np.where(live, inputs[idx, -width:], 0).astype(np.int32),
           "targets": np.where(live, targets[idx, -width:], 0).astype(
               np.int32)}


def row_buckets(inputs, rows, widths) -> np.ndarray:
  """[len(rows)] index into `widths` of the narrowest width holding a row."""
  lengths = (inputs[rows] > 0).sum(axis=1) + 1   # + 1: last target position
  return np.searchsorted(widths, np.minimum(lengths, widths[-1]))


def num_train_steps(inputs, rows, batch_size, widths) -> int:
  counts = np.bincount(row_buckets(inputs, rows, widths))
  return int(sum(-(-c // batch_size) for c in counts if c))


def width_classes(max_len: int, min_width: int = 8) -> list[int]:
  """Row widths used to bucket users by length: 8, 16, 32, ..., max_len."""
  widths, w = [], min_width
  while w < max_len:
    widths.append(w)
    w *= 2
  return widths + [max_len]


def length_buckets(lengths: np.ndarray, max_len: int, min_width: int = 8,
                   widths: Optional[Sequence[int]] = None):
  """Users grouped by the smallest width class that holds their sequence.

  Args:
    lengths: [U] sequence lengths (clipped to max_len).
    widths: the classes; default `width_classes(max_len, min_width)`.
  Returns:
    list of (width, user indices [U_w] int64), non-empty classes only.
  """
  lengths = np.minimum(np.asarray(lengths), max_len)
  if widths is None:
    widths = width_classes(max_len, min_width)
  widths = sorted(set(min(int(w), max_len) for w in widths) | {max_len})
  cls = np.searchsorted(np.asarray(widths), lengths, side="left")
  return [(w, np.flatnonzero(cls == i)) for i, w in enumerate(widths)
          if np.any(cls == i)]


def iter_batches(users: np.ndarray, batch_size: int):
  """Fixed-size batches of `users`; the last is padded by repeating one.

  Yields (indices [batch_size] int64, number of real entries).
  """
  for s in range(0, len(users), batch_size):
    idx = users[s:s + batch_size]
    n = len(idx)
    yield np.concatenate([idx, np.full(batch_size - n, idx[0])]), n
# ----------------------------------------------------------------------------
# The generator's inputs: each user's training-prefix items as a sparse row
# ----------------------------------------------------------------------------
# A generator batch is a flat bag: ids [P] and seg [P] (the batch slot of
# each entry) plus a [B] validity mask, holding at most B users and at most
# P items, so the encoder's bag costs O(nnz x hidden) however long the
# longest user is. P and B are static: the step compiles once.


def train_rows(ds: data_lib.SequenceData, cap: int = 0):
  """Each user's unique training-prefix items, time order, as CSR.

  Reads items[indptr[u]:split_end('train')[u]] only: validation and test
  items never enter. A repeated item is placed at its last occurrence. With
  `cap` > 0 only the `cap` most recent unique items are kept.

  Returns:
    (indptr [U+1] int64, items [n] int32).
  """
  u = ds.num_users
  start = ds.indptr[:-1].astype(np.int64)
  end = ds.split_end("train").astype(np.int64)
  rows, pos = data_lib.row_ranges(start, end)
  items = ds.items[pos]
  # Unique (row, item), keeping the last position of each.
  order = np.lexsort((-pos, items, rows))
  rows, items, pos = rows[order], items[order], pos[order]
  first = np.ones(rows.size, dtype=bool)
  first[1:] = (rows[1:] != rows[:-1]) | (items[1:] != items[:-1])
  rows, items, pos = rows[first], items[first], pos[first]
  order = np.lexsort((pos, rows))
  rows, items = rows[order], items[order]
  counts = np.bincount(rows, minlength=u)
  if cap > 0:
    row_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(rows.size) - row_start[rows]
    keep = rank >= counts[rows] - cap
    rows, items = rows[keep], items[keep]
    counts = np.bincount(rows, minlength=u)
  indptr = np.zeros(u + 1, dtype=np.int64)
  np.cumsum(counts, out=indptr[1:])
  return indptr, items.astype(np.int32)


def token_budget(lengths: np.ndarray, batch_size: int, tokens: int = 0,
                 slack: float = 1.5) -> int:
  """P, the static number of bag entries of a batch.

  `tokens` > 0 is used as given (raised to the longest row if below it);
  0 means slack x batch_size x mean row length, at least the longest row,
  rounded up to a multiple of 256.
  """
  longest = max(1, int(lengths.max(initial=0)))
  if tokens <= 0:
    tokens = int(math.ceil(slack * batch_size * max(float(lengths.mean()),
                                                    1.0)))
    tokens = -(-tokens // 256) * 256
  return max(tokens, longest)


def pack_batches(order: np.ndarray, lengths: np.ndarray, batch_size: int,
                 tokens: int):
  """Cuts users, in the given order, into batches of <= B users, <= P items.

  Greedy: each batch takes users in order until the next one would exceed
  either limit (P >= the longest row, so every batch holds at least one
  user). The loop is over batches, not users.

  Args:
    order: [U] user rows in batch order.
    lengths: [U] row lengths (indexed by user row).
    batch_size: B.
    tokens: P.
  Returns:
    (users [nb, B] int64, valid [nb, B] bool); padding slots hold row 0.
  """
  u = order.size
  cum = np.concatenate([[0], np.cumsum(lengths[order], dtype=np.int64)])
  bounds = []
  s = 0
  while s < u:
    e_tok = int(np.searchsorted(cum, cum[s] + tokens, side="right")) - 1
    e = max(s + 1, min(s + batch_size, e_tok, u))
    bounds.append((s, e))
    s = e
  nb = max(1, len(bounds))
  users = np.zeros((nb, batch_size), np.int64)
  valid = np.zeros((nb, batch_size), bool)
  for k, (s, e) in enumerate(bounds):
    users[k, :e - s] = order[s:e]
    valid[k, :e - s] = True
  return users, valid


def epoch_batches(lengths: np.ndarray, batch_size: int, tokens: int,
                  seed: int, epoch: int, shuffle: bool = True):
  """The batches of an epoch: `pack_batches` over a seeded permutation.

  The order is drawn from (seed, epoch) alone, so a resumed run sees the
  same batches; `shuffle=False` keeps row order (inference).
  """
  u = lengths.size
  if shuffle:
    order = np.random.default_rng([seed, epoch]).permutation(u)
  else:
    order = np.arange(u)
  return pack_batches(order, lengths, batch_size, tokens)


def flat_rows(indptr: np.ndarray, items: np.ndarray, users: np.ndarray,
              valid: np.ndarray, tokens: int):
  """The rows of the valid users as a flat bag padded to P entries.

  Returns:
    ids [P] int32 (0 = padding), seg [P] int32 (slot of each entry in the
    batch; padding points at slot 0 with id 0, which weighs nothing).
  """
  start = indptr[users]
  lens = np.where(valid, indptr[users + 1] - start, 0)
  n = int(lens.sum())
  if n > tokens:
    raise ValueError(f"batch holds {n} items, more than its budget {tokens}")
  seg, pos = data_lib.row_ranges(start, start + lens)
  ids = np.zeros(tokens, np.int32)
  ids[:n] = items[pos]
  seg_out = np.zeros(tokens, np.int32)
  seg_out[:n] = seg
  return ids, seg_out


def make_batch(indptr, items, users, valid, tokens: int) -> dict:
  """A train batch: ids [P] int32, seg [P] int32, valid [B] float32."""
  ids, seg = flat_rows(indptr, items, users, valid, tokens)
  return {"ids": ids, "seg": seg, "valid": valid.astype(np.float32)}


def infer_batches(rows, hist_rows, targets: np.ndarray, batch_size: int):
  """Every user once, in row order, as inference batches.

  Args:
    rows: (indptr, items) of the encoder's input (`train_rows`, capped).
    hist_rows: (indptr, items) of the full prefixes, masked from the top-M
      (`rows` itself when there is no cap).
    targets: [U] validation items.
    batch_size: B.
  Yields:
    (users [B] int64, valid [B] bool, batch): ids, seg, hist, hseg [P]
    int32; targets, users [B] int32. P is the full prefixes' budget, which
    holds the capped rows too.
  """
  hist_lens = np.diff(hist_rows[0])
  tokens = token_budget(hist_lens, batch_size)
  users, valid = epoch_batches(hist_lens, batch_size, tokens, 0, 0,
                               shuffle=False)
  for us, ok in zip(users, valid):
    ids, seg = flat_rows(rows[0], rows[1], us, ok, tokens)
    hist, hseg = ((ids, seg) if hist_rows is rows else
                  flat_rows(hist_rows[0], hist_rows[1], us, ok, tokens))
    yield us, ok, {"ids": ids, "seg": seg, "hist": hist, "hseg": hseg,
                   "targets": targets[us], "users": us.astype(np.int32)}
