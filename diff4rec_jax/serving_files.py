"""Serving files and ids: id maps, histories files, the TSV of
recommendations. numpy only (no jax): `recommend` drives these.

Id maps are `<id>\t<raw id>` TSVs with a header line (`prepare` writes
`<name>_item_map.tsv` and `<name>_user_map.tsv` next to a data file). An
`IdSpace` turns the ids a person gives (raw ids when a map exists) into
the model's internal ids 1..N and back, vectorized (sorted search).
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import numpy as np

from diff4rec_jax import data as data_lib
from diff4rec_jax import interactions

UNKNOWN_ITEMS = ("error", "skip")
HEADER = "user\trank\titem\tscore"


class RecommendError(ValueError):
  """A run, export, id or history cannot be used; the message says why."""


# ----------------------------------------------------------------------------
# Id maps
# ----------------------------------------------------------------------------
def read_id_map(path: str, rows: Optional[int] = None) -> np.ndarray:
  """Raw ids [R] (str) of a `<id>\\t<raw id>` TSV, row i for id i + 1.

  A first line whose id field is not an integer is a header. The ids must
  be 1..R in order; `rows`: R must be at least this (every id of the data
  has a raw id).
  """
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except OSError as e:
    raise RecommendError(f"{path}: cannot read: {e}") from e
  start = 1 if lines and not lines[0].split("\t")[0].strip().isdigit() else 0
  fields = [l.split("\t", 1) for l in lines[start:] if l.strip()]
  for j, f in enumerate(fields):
    if len(f) != 2 or f[0].strip() != str(j + 1):
      raise RecommendError(
          f"{path}:{j + start + 1}: expected `{j + 1}\\t<raw id>` (ids 1..R "
          f"in order), found {lines[j + start]!r}")
  raw = np.array([f[1].strip() for f in fields], dtype=str)
  if rows is not None and len(raw) < rows:
    raise RecommendError(f"{path}: {len(raw)} ids, but the data has ids up "
                         f"to {rows}; the map belongs to another file.")
  return raw


def find_id_maps(data_path: str, name: str = "") -> dict:
  """{'item': path or None, 'user': path or None}: the maps `prepare` writes
  next to a data file (`<stem>_item_map.tsv`, or `<name>_item_map.tsv`)."""
  folder = os.path.dirname(os.path.abspath(data_path))
  out = {}
  for kind in ("item", "user"):
    out[kind] = None
    for stem in dict.fromkeys([data_lib.file_stem(data_path), name]):
      p = os.path.join(folder, f"{stem}_{kind}_map.tsv")
      if stem and os.path.isfile(p):
        out[kind] = p
        break
  return out


def as_ids(raw: np.ndarray):
  """Raw ids as int64 when all are plain decimal integers, else str."""
  if raw.size and all(s.isdigit() and (s == "0" or not s.startswith("0"))
                      for s in raw):
    return raw.astype(np.int64)
  return raw


class IdSpace:
  """The ids a user of the model sees (raw, when a map exists) <-> the
  model's internal ids 1..N.

  raw: [N] str raw id of internal id i + 1, or None (ids are the internal
  ones).
  """

  def __init__(self, raw: Optional[np.ndarray], size: int):
    self.size = size
    self.raw = None if raw is None else np.asarray(raw[:size], dtype=str)
    if self.raw is not None:
      self._order = np.argsort(self.raw, kind="stable")
      self._sorted = self.raw[self._order]
      self.shown = as_ids(self.raw)

  def to_internal(self, values) -> tuple[np.ndarray, np.ndarray]:
    """(internal ids [n] int64, known [n] bool) of ids as users give them."""
    values = np.asarray(values)
    if self.raw is None:
      try:
        ids = values.astype(np.int64)
      except (TypeError, ValueError, OverflowError):
        ids = np.array([int(v) if str(v).isdigit() and len(str(v)) < 12
                        else -1
                        for v in values.ravel()], np.int64)
      known = (ids >= 1) & (ids <= self.size)
      return np.where(known, ids, 0), known
    s = values.astype(str)
    pos = np.minimum(np.searchsorted(self._sorted, s), self.size - 1)
    known = self._sorted[pos] == s
    return np.where(known, self._order[pos] + 1, 0).astype(np.int64), known

  def to_shown(self, ids: np.ndarray) -> np.ndarray:
    """Ids as users see them; internal id 0 (nothing) stays 0 / ''."""
    ids = np.asarray(ids)
    if self.raw is None:
      return ids
    out = self.shown[np.maximum(ids, 1) - 1]
    return np.where(ids > 0, out, out.dtype.type(0) if out.dtype.kind == "i"
                    else "")


# ----------------------------------------------------------------------------
# Files: new histories in, TSV out
# ----------------------------------------------------------------------------
def read_histories(path: str):
  """A histories file in the data formats: `user item` lines, or `user item
  item ...` lines (a user's lines joined in file order).

  Returns (users [U] str in order of first appearance, histories: a list of
  U str arrays, where(j) -> 'path:line' of flat item j).
  """
  try:
    text = interactions.read_bytes(path).decode("utf-8")
  except data_lib.DataError as e:
    raise RecommendError(str(e)) from None
  except UnicodeDecodeError as e:
    raise RecommendError(f"{path}: not UTF-8 text ({e})") from None
  users, items, lines = [], [], []
  for n, line in enumerate(text.splitlines(), 1):
    f = line.split()
    if not f:
      continue
    if len(f) < 2:
      raise RecommendError(f"{path}:{n}: expected a user id and at least "
                           f"one item id, found {line.strip()!r}")
    users.append(f[0])
    items.append(f[1:])
    lines.append(n)
  if not users:
    raise RecommendError(f"{path}: no histories (empty file)")
  uniq, first, inv = np.unique(np.array(users), return_index=True,
                               return_inverse=True)
  rank = np.argsort(np.argsort(first))          # user -> order of appearance
  line_order = np.argsort(rank[inv], kind="stable")
  lens = np.array([len(items[i]) for i in line_order])
  flat = np.concatenate([np.array(items[i], dtype=str) for i in line_order])
  flat_lines = np.repeat(np.array(lines)[line_order], lens)
  u_of_line = rank[inv][line_order]
  indptr = np.concatenate([[0], np.cumsum(np.bincount(
      np.repeat(u_of_line, lens), minlength=len(uniq)))])
  hist = [flat[indptr[j]:indptr[j + 1]] for j in range(len(uniq))]
  return (uniq[np.argsort(rank)], hist,
          lambda j: f"{path}:{int(flat_lines[j])}")


def parse_users(value: str) -> list:
  """--users: a file of ids (whitespace separated) or a comma list."""
  if os.path.isfile(value):
    with open(value) as f:
      ids = f.read().split()
    if not ids:
      raise RecommendError(f"--users: {value} holds no ids")
    return ids
  ids = [v.strip() for v in value.split(",") if v.strip()]
  if not ids:
    raise RecommendError(f"--users: {value!r} is neither a file nor a "
                         "comma-separated list of ids")
  return ids


def format_tsv(users, items, scores) -> str:
  """TSV text: header, then `user rank item score` per user and rank;
  ranks with no item (score -inf) are left out."""
  u, k = items.shape
  keep = np.isfinite(scores).ravel()
  cols = [np.repeat(np.asarray(users).astype(str), k),
          np.tile(np.arange(1, k + 1).astype(str), u),
          np.asarray(items).astype(str).ravel(),
          np.char.mod("%.6f", scores.ravel())]
  cols = [c[keep] for c in cols]
  body = "\n".join("\t".join(r) for r in zip(*cols))
  return HEADER + "\n" + body + ("\n" if body else "")


def write_text(path: str, text: str) -> None:
  """Atomic write ('-' = stdout)."""
  if path == "-":
    sys.stdout.write(text)
    return
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
