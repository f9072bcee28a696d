"""Datasets: reading interaction files, the leave-one-out split, padded arrays.

This module owns everything between a file on disk and fixed-shape numpy
arrays that the compiled steps consume:

* `resolve_path` finds a dataset's file (`DATASET_FILES` under `data.dir`),
  and `load` reads the one a `config.data` block names. Neither downloads:
  getting a missing public dataset is `datasets.prepare.ensure_for_config`'s
  job, which the entry points call first (this module never imports
  `datasets`).
* `read_interactions` reads the two common text formats (plain or gzip):
  the *pair* format (`user item` per line, time-ordered within a user) and the
  *per-user* format (`user item item ...`, one line per user); the parser is
  `interactions.parse_interactions`.
* `SequenceData` holds every user's full, time-ordered sequence in CSR form
  (`indptr [U+1]`, `items [nnz]`) and derives the leave-one-out split from it:
  the last item is the test target, the second-to-last the validation target,
  the rest is the training prefix.
* `left_pad` / `SequenceData.train_arrays` / `SequenceData.eval_arrays` build
  the `[U, L]` int32 arrays (most recent `max_len` items, left-padded with the
  padding id 0) with vectorized index arithmetic: no Python loop over users.

Item ids are 1-based; id 0 is padding everywhere in the project.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Optional

import numpy as np

from diff4rec_jax import errors
from diff4rec_jax import interactions

DATA_DIR_ENV = "DIFF4REC_DATA_DIR"

# File names of the datasets, in the pair format, under the data directory.
DATASET_FILES = {
    "ml-100k": "ml-100k.txt",
    "ml-1m": "ml-1m.txt.gz",
    "beauty": "beauty.txt.gz",
    "yelp": "yelp.txt.gz",
    "steam": "steam.txt.gz",
    "synthetic-steam": "synthetic-steam.txt.gz",
}

# The smallest sequence that can be split into train prefix + valid + test.
MIN_SPLIT_LEN = 3


# Item ids more than this many times the count of distinct items get a
# warning: the embedding table and every full ranking pay for every id.
SPARSE_WARN_RATIO = 4


# A data file or data option is unusable (the class is in errors.py, so that
# interactions.py and datasets/ raise it without importing this module).
DataError = errors.DataError


def default_data_dir() -> str:
  """`$DIFF4REC_DATA_DIR` if set, else `./data`."""
  return os.environ.get(DATA_DIR_ENV) or "data"


def resolve_path(name: str, data_dir: Optional[str] = None,
                 path: Optional[str] = None) -> str:
  """Returns the interaction file for dataset `name`; a clear error if absent."""
  data_dir = data_dir or default_data_dir()
  if path:
    candidates = [path if os.path.isabs(path) else os.path.join(data_dir, path)]
    if not os.path.isabs(path):
      candidates.append(path)
  else:
    if name not in DATASET_FILES:
      raise DataError(
          f"config.data.name: unknown dataset {name!r}; expected one of "
          f"{sorted(DATASET_FILES)} or set config.data.path to a file.")
    fname = DATASET_FILES[name]
    candidates = [os.path.join(data_dir, fname)]
    if fname.endswith(".gz"):
      candidates.append(os.path.join(data_dir, fname[:-3]))
    else:
      candidates.append(os.path.join(data_dir, fname + ".gz"))
  for c in candidates:
    if os.path.isfile(c):
      return c
  looked = ", ".join(os.path.abspath(c) for c in candidates)
  raise DataError(
      f"dataset {name!r} not found; looked for: {looked}. Set "
      f"config.data.dir or ${DATA_DIR_ENV} to the folder holding it, or get "
      f"it with `python -m diff4rec_jax.datasets.prepare --dataset={name} "
      f"--data_dir={data_dir}`.")


@dataclasses.dataclass
class SequenceData:
  """Every user's full time-ordered sequence, in CSR form, plus the split.

  Attributes:
    name: dataset name.
    user_ids: [U] int64 original user ids (row u of the arrays is user_ids[u]).
    indptr: [U+1] int64; user u's items are items[indptr[u]:indptr[u+1]].
    items: [nnz] int32 item ids in 1..num_items, time order within a user.
    num_items: largest item id (the item vocabulary is 0..num_items).
    source: where the data came from.
    format: the file format read ('pair' / 'per_user'; '' if not a file).
  """
  name: str
  user_ids: np.ndarray
  indptr: np.ndarray
  items: np.ndarray
  num_items: int
  source: str = ""
  format: str = ""

  @property
  def num_users(self) -> int:
    return len(self.user_ids)

  @property
  def lengths(self) -> np.ndarray:
    return np.diff(self.indptr)

  def stats(self) -> dict:
    """Table-1 statistics: users, items, actions, average length, sparsity."""
    n = int(self.items.size)
    return {
        "users": self.num_users,
        "items": self.num_items,
        "actions": n,
        "avg_len": round(n / max(1, self.num_users), 2),
        "min_len": int(self.lengths.min()),
        "max_len": int(self.lengths.max()),
        "sparsity": round(1.0 - n / (self.num_users * self.num_items), 6),
    }

  # -- the leave-one-out split --------------------------------------------
  def split_end(self, split: str) -> np.ndarray:
    """[U] exclusive end (into `items`) of the input history for `split`.

    train: the prefix without valid and test items; valid: the same prefix
    (its target is the second-to-last item); test: prefix + valid item.
    """
    off = {"train": 2, "valid": 2, "test": 1}[split]
    return self.indptr[1:] - off

  def targets(self, split: str) -> np.ndarray:
    """[U] int32 target item of `split` ('valid' or 'test')."""
    return self.items[self.split_end(split)]

  def train_arrays(self, max_len: int, windows: int = 1):
    """Next-item training pairs from each user's training prefix.

    Row u < U is user u's most recent L pairs. windows w > 1 adds, for users
    whose prefix holds more than L pairs, rows of the L pairs before those
    (window 1), the L before that (window 2), ... up to w windows per user
    (0 = every window): each pair of the prefix is then a target in exactly
    one row. Extra rows follow the U user rows, window by window.

    Returns:
      inputs [R, L] int32: prefix[:-1], L per row, left-padded with 0.
      targets [R, L] int32: prefix[1:], aligned with inputs (0 = no target).
    """
    start = self.indptr[:-1]
    end = self.split_end("train")
    ends = [end]
    k = 1
    while windows == 0 or k < windows:
      e = end - k * max_len
      more = e > start + 1          # this window still holds a pair
      if not more.any():
        break
      ends.append(np.where(more, e, -1))
      k += 1
    rows_start = np.concatenate([start] + [start[e >= 0] for e in ends[1:]])
    rows_end = np.concatenate([ends[0]] + [e[e >= 0] for e in ends[1:]])
    inputs = left_pad(self.items, rows_start, rows_end - 1, max_len)
    targets = left_pad(self.items, rows_start + 1, rows_end, max_len)
    return inputs, targets

  def eval_arrays(self, split: str, max_len: int):
    """Inputs [U, L] int32 (history before the target) and targets [U]."""
    end = self.split_end(split)
    return left_pad(self.items, self.indptr[:-1], end, max_len), self.targets(
        split)

  def prefix_csr(self, split: str):
    """Each user's items before the `split` target as they are (time order,
    repeats kept): the rows `eval_arrays` pads, as CSR (indptr [U+1] int64,
    items [n] int32)."""
    start, end = self.indptr[:-1], self.split_end(split)
    indptr = np.zeros(self.num_users + 1, dtype=np.int64)
    np.cumsum(end - start, out=indptr[1:])
    return indptr, self.items[_ranges(start, end)].astype(np.int32)

  def history_csr(self, split: str):
    """Unique items each user saw before the `split` target, target excluded.

    Used to mask already-seen items out of the ranking. Returns (indptr [U+1]
    int64, items [h] int32), each user's items sorted ascending.
    """
    end = self.split_end(split)
    start = self.indptr[:-1]
    lens = end - start
    rows = np.repeat(np.arange(self.num_users), lens)
    idx = _ranges(start, end)
    items = self.items[idx]
    tgt = self.targets(split)
    keep = items != tgt[rows]
    rows, items = rows[keep], items[keep]
    order = np.lexsort((items, rows))
    rows, items = rows[order], items[order]
    uniq = np.ones(rows.size, dtype=bool)
    uniq[1:] = (rows[1:] != rows[:-1]) | (items[1:] != items[:-1])
    rows, items = rows[uniq], items[uniq]
    indptr = np.zeros(self.num_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=self.num_users), out=indptr[1:])
    return indptr, items.astype(np.int32)


def csr_entries(indptr: np.ndarray, flat: np.ndarray, rows: np.ndarray):
  """Entries of rows `rows` of a CSR array, as (row_of [h], values [h]).

  row_of[j] is the position in `rows` (0..len(rows)-1) of entry j.
  """
  rows = np.asarray(rows, dtype=np.int64)
  row_of, pos = row_ranges(indptr[rows], indptr[rows + 1])
  return row_of, flat[pos]


def row_ranges(start: np.ndarray, end: np.ndarray):
  """Positions of the ranges [start[i], end[i]), concatenated, vectorized.

  Returns (row_of [h] int64, pos [h] int64): pos = the concatenation of
  arange(start[i], end[i]) over i, row_of[j] = the i that pos[j] came from.
  A range with end <= start is empty.
  """
  start = np.asarray(start, dtype=np.int64)
  end = np.asarray(end, dtype=np.int64)
  lens = np.maximum(end - start, 0)
  return np.repeat(np.arange(len(start)), lens), _ranges(start, end)


def _ranges(start: np.ndarray, end: np.ndarray) -> np.ndarray:
  """Concatenation of arange(start[i], end[i]) for all i, vectorized."""
  lens = np.maximum(end - start, 0)
  total = int(lens.sum())
  if total == 0:
    return np.zeros(0, dtype=np.int64)
  offs = np.repeat(start - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
  return np.arange(total, dtype=np.int64) + offs


def left_pad(items: np.ndarray, start: np.ndarray, end: np.ndarray,
             max_len: int) -> np.ndarray:
  """Rows items[start[i]:end[i]], last `max_len` kept, left-padded with 0.

  Args:
    items: [nnz] flat item array.
    start, end: [R] row bounds into `items` (end exclusive).
    max_len: L, the output width.
  Returns:
    [R, L] int32.
  """
  start = np.asarray(start, dtype=np.int64)
  end = np.asarray(end, dtype=np.int64)
  idx = end[:, None] - max_len + np.arange(max_len, dtype=np.int64)[None, :]
  valid = idx >= start[:, None]
  out = np.where(valid, items[np.clip(idx, 0, max(0, items.size - 1))], 0)
  return out.astype(np.int32)


def from_interactions(users: np.ndarray, items: np.ndarray, name: str,
                      source: str = "", min_len: int = MIN_SPLIT_LEN,
                      drop_short: bool = False) -> SequenceData:
  """Groups parallel (user, item) arrays into per-user sequences.

  Keeps file order within a user (stable sort), so a user split across
  non-adjacent lines keeps its time order.
  """
  order = np.argsort(users, kind="stable")
  users, items = users[order], items[order]
  user_ids, counts = np.unique(users, return_counts=True)
  short = counts < min_len
  if short.any():
    if not drop_short:
      bad = user_ids[short]
      raise DataError(
          f"{source}: {int(short.sum())} user(s) have fewer than {min_len} "
          f"interactions and cannot be split into train/valid/test (first: "
          f"user {int(bad[0])} with {int(counts[short][0])}). Set "
          "config.data.drop_short_users=True to drop them (the count is "
          "logged).")
    logging.warning("%s: dropped %d of %d users with fewer than %d "
                    "interactions (config.data.drop_short_users=True).",
                    source, int(short.sum()), len(user_ids), min_len)
    if short.all():
      raise DataError(
          f"{source}: every user ({len(user_ids)}) has fewer than {min_len} "
          "interactions, so config.data.drop_short_users=True drops them "
          f"all; each user needs at least {min_len + 1} (train, valid, test "
          "and one training pair).")
    keep_user = np.repeat(~short, counts)
    users, items = users[keep_user], items[keep_user]
    user_ids, counts = user_ids[~short], counts[~short]
  max_item = int(items.max())
  distinct = len(np.unique(items))
  if max_item > 10**6 and max_item > 100 * distinct:
    raise DataError(
        f"{source}: item ids are sparse: the largest is {max_item} but only "
        f"{distinct} distinct items occur, so the embedding table would have "
        f"{max_item + 1} rows. Is this a raw file (e.g. with ratings or "
        "timestamps as fields)? Renumber items 1..N with `python -m "
        "diff4rec_jax.datasets.prepare`.")
  if max_item > 1000 and max_item > SPARSE_WARN_RATIO * distinct:
    logging.warning(
        "%s: item ids are sparse: the largest is %d but only %d distinct "
        "items occur, so the embedding table and every full-ranking "
        "evaluation hold %d rows, %.0fx the items: training and evaluation "
        "run up to that much slower. Renumber items 1..N with `python -m "
        "diff4rec_jax.datasets.prepare` to avoid it.", source, max_item,
        distinct, max_item + 1, (max_item + 1) / distinct)
  indptr = np.zeros(len(user_ids) + 1, dtype=np.int64)
  np.cumsum(counts, out=indptr[1:])
  return SequenceData(name=name, user_ids=user_ids, indptr=indptr,
                      items=items.astype(np.int32),
                      num_items=int(items.max()), source=source)


def read_interactions(path: str, name: str = "", fmt: str = "auto",
                      min_len: int = MIN_SPLIT_LEN,
                      drop_short: bool = False) -> SequenceData:
  """Reads an interaction file (plain or gzip, pair or per-user format)."""
  raw = interactions.read_bytes(path)
  users, items, fmt = interactions.parse_interactions(raw, source=path,
                                                      fmt=fmt)
  ds = from_interactions(users, items, name=name or path, source=path,
                         min_len=min_len, drop_short=drop_short)
  ds.format = fmt
  return ds


def file_stem(path: str) -> str:
  """'toys' for '/x/toys.txt.gz', 'ml-1m' for 'ml-1m.txt.gz'."""
  stem = os.path.basename(path)
  for ext in (".gz", ".txt", ".tsv", ".csv", ".dat"):
    if stem.endswith(ext) and len(stem) > len(ext):
      stem = stem[:-len(ext)]
  return stem


def dataset_name(data_config) -> str:
  """The dataset's name for logs, results and hashes.

  Without `data.path` it is `data.name`. With `data.path`, the dataset is
  named after the file (`file_stem`) unless `data.name` was given: a name
  that is not one of the built-in DATASET_FILES keys is taken as given
  (e.g. `--config.data.name=toys`); a built-in name is the config file's
  default (base.py says 'ml-1m', beauty.py 'beauty', ...) and gives way to
  the file's own name.
  """
  name = data_config.name
  path = data_config.get("path") or ""
  if not path or (name and name not in DATASET_FILES):
    return name
  return file_stem(path)


def _unknown_dataset(name: str, data_dir: str) -> DataError:
  """The one message for a dataset name the project does not know."""
  hint = ""
  if os.path.isdir(data_dir):
    found = sorted(f for f in os.listdir(data_dir)
                   if f.startswith(name) and
                   not f.endswith(("_map.tsv", ".json")) and
                   os.path.isfile(os.path.join(data_dir, f)))
    if found:
      hint = (f" {data_dir} holds {', '.join(found[:3])}: e.g. "
              f"--config.data.path={os.path.join(data_dir, found[0])}.")
  return DataError(
      f"config.data.name: {name!r} is not a built-in dataset "
      f"({', '.join(sorted(DATASET_FILES))}). To train on your own file, set "
      f"--config.data.path=FILE (any file name; pair `user item` or per-user "
      f"`user item item ...` lines, detected; the dataset is named after the "
      f"file unless data.name is set).{hint}")


def check_trainable(ds: SequenceData) -> None:
  """A training set needs a user with a training pair: 4+ interactions."""
  if (ds.lengths <= MIN_SPLIT_LEN).all():
    raise DataError(
        f"{ds.source}: every user has at most {MIN_SPLIT_LEN} interactions, "
        "so after the leave-one-out split (last item: test, second-to-last: "
        "valid) no user has a training pair (0 training steps). Each user "
        f"needs at least {MIN_SPLIT_LEN + 1} interactions.")


def load(data_config) -> SequenceData:
  """Loads the dataset a `config.data` block names.

  Fields used: name, dir (default $DIFF4REC_DATA_DIR or ./data), path
  (optional explicit file), format, drop_short_users. The dataset is named
  by `dataset_name`; its statistics are logged. A missing file is an error
  that says how to get it: the entry points fetch a missing public dataset
  first (`datasets.prepare.ensure_for_config`, when `data.download`).
  """
  name = dataset_name(data_config)
  if not data_config.get("path") and name not in DATASET_FILES:
    raise _unknown_dataset(name, data_config.get("dir") or default_data_dir())
  path = resolve_path(data_config.name, data_config.get("dir") or None,
                      data_config.get("path") or None)
  ds = read_interactions(path, name=name,
                         fmt=data_config.get("format", "auto"),
                         drop_short=data_config.get("drop_short_users", False))
  check_trainable(ds)
  st = ds.stats()
  logging.info("data: %s from %s (%s format): %d users, %d items, %d "
               "actions, length mean %.1f (min %d, max %d), sparsity %.4f%%",
               name, path, ds.format, st["users"], st["items"], st["actions"],
               st["avg_len"], st["min_len"], st["max_len"],
               100 * st["sparsity"])
  return ds
