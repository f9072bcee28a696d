"""Atomic file writers of `datasets/`: pair files, JSON, id maps.

Every output of dataset preparation goes through `atomic_open` (a temp file
in the same folder, fsynced, then `os.replace`), so a crash never leaves a
half file under the final name:

* `format_pairs` / `write_pairs` turn parallel id arrays into the pair
  format that `data.read_interactions` reads (`<user> <item>\\n`), built with
  numpy digit arithmetic instead of a loop over lines; a `.gz` path is
  gzipped reproducibly (no name, mtime 0).
* `write_json` writes a stats file; `write_id_map` a `<new id>\\t<raw id>` TSV
  (the maps `serving_files` reads back to speak raw ids).

No project imports: numpy and the standard library only.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
from typing import Sequence

import numpy as np


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb"):
  """Opens a temp file beside `path`; renames it to `path` on success only.

  On any exception inside the `with` block the temp file is deleted and
  `path` is left as it was (absent, or its previous content).
  """
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder,
                             prefix="." + os.path.basename(path) + ".",
                             suffix=".tmp")
  try:
    with os.fdopen(fd, mode) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def _ndigits(v: np.ndarray) -> np.ndarray:
  nd = np.ones(v.shape, dtype=np.int64)
  x = v // 10
  while x.any():
    nd += x > 0
    x //= 10
  return nd


def _put_digits(buf: np.ndarray, start: np.ndarray, v: np.ndarray,
                nd: np.ndarray) -> None:
  v = v.copy()
  for k in range(int(nd.max())):
    m = nd > k
    buf[start[m] + nd[m] - 1 - k] = ord("0") + v[m] % 10
    v //= 10


def format_pairs(users: np.ndarray, items: np.ndarray) -> bytes:
  """The pair-format text of parallel id arrays, built without a line loop.

  Args:
    users: [n] positive integer user ids.
    items: [n] positive integer item ids.
  Returns:
    b"<user> <item>\\n" for every row, in the given order.
  """
  u = np.asarray(users, dtype=np.int64)
  i = np.asarray(items, dtype=np.int64)
  if u.shape != i.shape or u.ndim != 1:
    raise ValueError(f"users {u.shape} and items {i.shape} must be equal 1-D")
  if u.size == 0:
    return b""
  if (u <= 0).any() or (i <= 0).any():
    raise ValueError("pair-format ids must be positive")
  nu, ni = _ndigits(u), _ndigits(i)
  ends = np.cumsum(nu + ni + 2)
  starts = ends - (nu + ni + 2)
  buf = np.empty(int(ends[-1]), dtype=np.uint8)
  _put_digits(buf, starts, u, nu)
  buf[starts + nu] = ord(" ")
  _put_digits(buf, starts + nu + 1, i, ni)
  buf[ends - 1] = ord("\n")
  return buf.tobytes()


def write_pairs(path: str, users: np.ndarray, items: np.ndarray,
                compresslevel: int = 9) -> None:
  """Writes [n] users / items atomically in pair format; gzip if `*.gz`.

  The gzip stream has no name and mtime 0 (like `gzip -n`), so the same
  arrays always give the same bytes.
  """
  text = format_pairs(users, items)
  if path.endswith(".gz"):
    text = gzip.compress(text, compresslevel=compresslevel, mtime=0)
  with atomic_open(path, "wb") as f:
    f.write(text)


def write_json(path: str, obj) -> None:
  """Writes `obj` as indented JSON, atomically."""
  with atomic_open(path, "wb") as f:
    f.write((json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def _tsv_field(x) -> str:
  return (str(x).replace("\\", "\\\\").replace("\t", "\\t")
          .replace("\n", "\\n").replace("\r", "\\r"))


def write_id_map(path: str, header: str, raw_ids: Sequence) -> None:
  """TSV `<new id>\\t<raw id>` for new ids 1..N (backslash-escaped)."""
  lines = [header]
  lines.extend(f"{k}\t{_tsv_field(r)}" for k, r in enumerate(raw_ids, 1))
  with atomic_open(path, "wb") as f:
    f.write(("\n".join(lines) + "\n").encode("utf-8"))
