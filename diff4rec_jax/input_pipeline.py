"""Host-side (numpy) batches of the recommender: fixed shapes, bucketed.

Training batches are a function of (seed, epoch) only, so a resumed run
sees the same ones; evaluation batches cover every user (the last one
padded and masked).
"""

from __future__ import annotations

import dataclasses
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
