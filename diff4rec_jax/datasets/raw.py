"""Raw dataset files: their formats, the parsers, and the paper's filter.

* `RAW_FORMATS` names each public release's layout: MovieLens `u.data` and
  `ratings.dat`, Amazon ratings CSV and reviews JSON lines, SASRec's Steam
  reviews (Python dict literals), Yelp `review.json`.
* `parse_raw` reads one raw file (plain, .gz or a .zip member) into parallel
  arrays of raw user ids, raw item ids and timestamps (`RawInteractions`),
  raising `errors.DataError` with the file and 1-based line of a problem.
* `preprocess` treats every rating/review as an implicit interaction, applies
  the paper's filter (users with fewer than `MIN_USER_ACTIONS` = 5 actions
  are removed; optionally also an item minimum, iterated to a fixed point by
  `kcore_mask`), remaps ids to 1..N and orders each user's actions by
  timestamp. Ties keep their order in the raw file (stable sort).
  `sequence_stats` gives the Table-1 statistics of the result.

Id remapping: users and items are numbered 1..N in ascending order of their
raw id (numeric order for the integer ids of MovieLens, string order for the
string ids of Amazon, Steam and Yelp), after filtering. When the raw ids are
already exactly 1..N (ML-100K, ML-1M users) they are therefore unchanged, and
the ML-1M item numbering equals the staged `ml-1m_item_map.tsv`'s.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import gzip
import json
import os
import zipfile
import zlib
from typing import Iterable, Iterator, Optional

import numpy as np

from diff4rec_jax import errors

DataError = errors.DataError

# The paper's filter: users with fewer than 5 actions are removed.
MIN_USER_ACTIONS = 5


# --------------------------------------------------------------------------
# Raw formats
# --------------------------------------------------------------------------
@dataclasses.dataclass
class RawInteractions:
  """Parsed raw rows in file order.

  Attributes:
    users: [n] raw user ids (int64 array, or object array of str).
    items: [n] raw item ids (int64 array, or object array of str).
    times: [n] int64 timestamps (unix seconds).
    source: the file they came from.
  """
  users: np.ndarray
  items: np.ndarray
  times: np.ndarray
  source: str


@dataclasses.dataclass(frozen=True)
class _Delimited:
  sep: str
  int_ids: bool
  layout: str


@dataclasses.dataclass(frozen=True)
class _JsonLines:
  user_keys: tuple
  item_key: str
  time_key: str
  time_kind: str  # "unix" or "date"
  python_literal: bool


RAW_FORMATS = {
    # ML-100K u.data: user \t item \t rating \t unix_ts
    "movielens_tab": _Delimited("\t", True, "user<TAB>item<TAB>rating<TAB>ts"),
    # ML-1M ratings.dat: user::item::rating::unix_ts
    "movielens_dat": _Delimited("::", True, "user::item::rating::ts"),
    # Amazon 2014 ratings_<Category>.csv: user,item,rating,unix_ts (no header)
    "amazon_csv": _Delimited(",", False, "user,item,rating,ts"),
    # Amazon 2014 reviews_<Category>.json(.gz): one JSON object a line.
    "amazon_json": _JsonLines(("reviewerID",), "asin", "unixReviewTime",
                              "unix", True),
    # SASRec Steam steam_reviews.json.gz: Python dict literals (u'...'), one a
    # line. Users are `username` (present on every line); `user_id` is used
    # only on lines that lack a username.
    "steam": _JsonLines(("username", "user_id"), "product_id", "date",
                        "date", True),
    # Yelp Open Dataset yelp_academic_dataset_review.json: JSON lines.
    "yelp": _JsonLines(("user_id",), "business_id", "date", "date", False),
}


@contextlib.contextmanager
def _open_raw(path: str, member: str = ""):
  """A binary stream over a plain, gzip or zip (`member`) raw file."""
  with contextlib.ExitStack() as stack:
    try:
      if zipfile.is_zipfile(path):
        zf = stack.enter_context(zipfile.ZipFile(path))
        names = zf.namelist()
        name = member or next((n for n in names if not n.endswith("/")), "")
        if name not in names:
          raise DataError(f"{path}: archive has no member {name!r} (it has "
                          f"{names[:10]}).")
        stream = stack.enter_context(zf.open(name))
      else:
        with open(path, "rb") as f:
          magic = f.read(2)
        stream = stack.enter_context(
            gzip.open(path, "rb") if magic == b"\x1f\x8b" else
            open(path, "rb"))
    except (OSError, zipfile.BadZipFile) as e:
      raise DataError(f"{path}: cannot read: {e}") from e
    yield stream


def _lines(path: str, member: str = "") -> Iterator[tuple[int, str]]:
  """(1-based line number, decoded text without line end) of a raw file."""
  source = f"{path}:{member}" if member else path
  lineno = 0
  with _open_raw(path, member) as stream:
    try:
      for lineno, raw in enumerate(stream, 1):
        try:
          text = raw.decode("utf-8")
        except UnicodeDecodeError:
          text = raw.decode("latin-1")
        yield lineno, text.rstrip("\r\n")
    except (EOFError, OSError, zlib.error, zipfile.BadZipFile) as e:
      raise DataError(f"{source}:{lineno + 1}: file is corrupt or truncated "
                      f"({e}); download it again.") from e


def _parse_delimited(lines: Iterable[tuple[int, str]], spec: _Delimited,
                     source: str) -> RawInteractions:
  users, items, times = [], [], []
  conv = int if spec.int_ids else str
  for lineno, line in lines:
    if not line.strip():
      continue
    parts = line.split(spec.sep)
    if len(parts) != 4:
      raise DataError(
          f"{source}:{lineno}: expected 4 fields {spec.layout!r} separated "
          f"by {spec.sep!r}, found {len(parts)} in {line[:80]!r}.")
    u, i, _, t = (p.strip() for p in parts)
    try:
      t = int(t)
    except ValueError:
      if lineno == 1 and not spec.int_ids:
        continue  # a header row such as 'user,item,rating,timestamp'
      raise DataError(f"{source}:{lineno}: timestamp {t!r} is not an "
                      f"integer in {line[:80]!r}.") from None
    try:
      u, i = conv(u), conv(i)
    except ValueError:
      raise DataError(f"{source}:{lineno}: user/item ids must be integers, "
                      f"got {u!r}, {i!r}.") from None
    if not spec.int_ids and (not u or not i):
      raise DataError(f"{source}:{lineno}: empty user or item id in "
                      f"{line[:80]!r}.")
    users.append(u)
    items.append(i)
    times.append(t)
  dtype = np.int64 if spec.int_ids else object
  return RawInteractions(_array(users, dtype), _array(items, dtype),
                         np.array(times, dtype=np.int64), source)


def _array(values: list, dtype) -> np.ndarray:
  if dtype is object:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
  return np.array(values, dtype=dtype)


def _parse_json_lines(lines: Iterable[tuple[int, str]], spec: _JsonLines,
                      source: str) -> RawInteractions:
  users, items, times, linenos = [], [], [], []
  for lineno, line in lines:
    s = line.strip()
    if not s:
      continue
    rec = None
    if s.startswith('{"') or not spec.python_literal:
      with contextlib.suppress(ValueError):
        rec = json.loads(s)
    if rec is None and spec.python_literal:
      with contextlib.suppress(ValueError, SyntaxError, MemoryError,
                               RecursionError, TypeError):
        rec = ast.literal_eval(s)
    if not isinstance(rec, dict):
      what = "JSON" + (" or Python-literal" if spec.python_literal else "")
      raise DataError(f"{source}:{lineno}: not a {what} object: "
                      f"{s[:80]!r}.")
    user = next((rec[k] for k in spec.user_keys if rec.get(k) is not None),
                None)
    missing = [k for k, v in ((spec.user_keys[0], user),
                              (spec.item_key, rec.get(spec.item_key)),
                              (spec.time_key, rec.get(spec.time_key)))
               if v is None or v == ""]
    if missing:
      raise DataError(
          f"{source}:{lineno}: missing field(s) {missing}; expected keys "
          f"{'/'.join(spec.user_keys)}, {spec.item_key}, {spec.time_key}.")
    users.append(str(user))
    items.append(str(rec[spec.item_key]))
    times.append(rec[spec.time_key])
    linenos.append(lineno)
  return RawInteractions(_array(users, object), _array(items, object),
                         _times(times, linenos, spec, source), source)


def _times(values: list, linenos: list, spec: _JsonLines,
           source: str) -> np.ndarray:
  """[n] int64 unix seconds from ints or 'YYYY-MM-DD[ HH:MM:SS]' strings."""
  try:
    if spec.time_kind == "unix":
      return np.array([int(v) for v in values], dtype=np.int64)
    return np.array([str(v) for v in values],
                    dtype="datetime64[s]").astype(np.int64)
  except (ValueError, TypeError, OverflowError):
    pass
  for v, lineno in zip(values, linenos):  # only on failure: find the line
    try:
      if spec.time_kind == "unix":
        int(v)
      else:
        np.datetime64(str(v), "s")
    except (ValueError, TypeError, OverflowError):
      want = ("an integer unix time" if spec.time_kind == "unix" else
              "a date 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'")
      raise DataError(f"{source}:{lineno}: field {spec.time_key!r} is "
                      f"{v!r}; expected {want}.") from None
  raise DataError(f"{source}: cannot convert the {spec.time_key!r} values.")


def parse_raw(path: str, fmt: str, member: str = "") -> RawInteractions:
  """Reads a raw dataset file (plain, .gz or .zip) in format `fmt`.

  Args:
    path: the raw file.
    fmt: a key of RAW_FORMATS.
    member: the file inside a zip archive (e.g. 'ml-1m/ratings.dat').
  Returns:
    RawInteractions in file order.
  Raises:
    DataError naming the file and 1-based line of the first problem.
  """
  if fmt not in RAW_FORMATS:
    raise DataError(f"unknown raw format {fmt!r}; expected one of "
                    f"{sorted(RAW_FORMATS)}.")
  if not os.path.isfile(path):
    raise DataError(f"{path}: raw file not found.")
  spec = RAW_FORMATS[fmt]
  if member and not zipfile.is_zipfile(path):
    member = ""  # an already-extracted file
  source = f"{path}:{member}" if member else path
  lines = _lines(path, member)
  if isinstance(spec, _Delimited):
    raw = _parse_delimited(lines, spec, source)
  else:
    raw = _parse_json_lines(lines, spec, source)
  if raw.users.size == 0:
    raise DataError(f"{source}: no interactions found (empty file).")
  return raw


# --------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------
@dataclasses.dataclass
class Processed:
  """Preprocessed interactions, ready for `write_pairs`.

  Attributes:
    users: [n] int64 user ids 1..U, users contiguous and ascending.
    items: [n] int64 item ids 1..I, time order within a user.
    user_raw: [U] raw id of user k+1.
    item_raw: [I] raw id of item k+1.
    stats: Table-1 statistics plus what the filter removed.
  """
  users: np.ndarray
  items: np.ndarray
  user_raw: np.ndarray
  item_raw: np.ndarray
  stats: dict


def kcore_mask(users: np.ndarray, items: np.ndarray, min_user: int,
               min_item: int = 0) -> np.ndarray:
  """[n] bool rows kept by the k-core filter on integer codes.

  Removes items with < min_item rows, then users with < min_user rows, and
  repeats until nothing changes (with min_item = 0 that is one user pass).
  """
  keep = np.ones(users.shape, dtype=bool)
  nu = int(users.max()) + 1 if users.size else 0
  ni = int(items.max()) + 1 if items.size else 0
  while True:
    before = int(keep.sum())
    if min_item > 0:
      cnt = np.bincount(items[keep], minlength=ni)
      keep &= cnt[items] >= min_item
    if min_user > 0:
      cnt = np.bincount(users[keep], minlength=nu)
      keep &= cnt[users] >= min_user
    if int(keep.sum()) == before:
      return keep


def sequence_stats(users: np.ndarray, num_items: int) -> dict:
  """Table-1 statistics of pair arrays grouped by user ([n] user ids 1..U)."""
  n = int(users.size)
  lengths = np.bincount(users)[1:] if n else np.zeros(0, np.int64)
  lengths = lengths[lengths > 0]
  num_users = int(lengths.size)
  return {
      "users": num_users,
      "items": int(num_items),
      "actions": n,
      "avg_len": round(n / max(1, num_users), 2),
      "min_len": int(lengths.min()) if num_users else 0,
      "max_len": int(lengths.max()) if num_users else 0,
      "sparsity": round(1.0 - n / max(1, num_users * num_items), 6),
  }


def preprocess(raw: RawInteractions, min_user_actions: int = MIN_USER_ACTIONS,
               min_item_actions: int = 0,
               since: Optional[str] = None) -> Processed:
  """Implicit feedback, k-core filter, id remap and time order.

  Args:
    raw: parsed raw rows, in file order.
    min_user_actions: users with fewer rows (after `since`) are removed.
    min_item_actions: items with fewer rows are removed (0: none); with both
      minimums the filter is iterated to a fixed point (a true k-core).
    since: 'YYYY-MM-DD'; rows before it are dropped first.
  Returns:
    Processed arrays: users [n], items [n] (1-based, users contiguous in
    ascending id, each user's rows by timestamp with ties in file order).
  Raises:
    DataError when nothing is left.
  """
  n_raw = int(raw.users.size)
  users, items, times = raw.users, raw.items, raw.times
  n_since = n_raw
  if since:
    try:
      t0 = np.datetime64(since, "s").astype(np.int64)
    except ValueError:
      raise DataError(f"--since: {since!r} is not a date YYYY-MM-DD.") from None
    keep = times >= t0
    users, items, times = users[keep], items[keep], times[keep]
    n_since = int(keep.sum())
  # Codes in ascending raw-id order: the final ids keep that order.
  user_vals, ucode = np.unique(users, return_inverse=True)
  item_vals, icode = np.unique(items, return_inverse=True)
  ucode, icode = ucode.reshape(-1), icode.reshape(-1)
  keep = kcore_mask(ucode, icode, min_user_actions, min_item_actions)
  ucode, icode, times = ucode[keep], icode[keep], times[keep]
  if ucode.size == 0:
    raise DataError(
        f"{raw.source}: no user has {min_user_actions} or more actions "
        f"(min_item_actions={min_item_actions}, since={since!r}); nothing "
        "left to write.")
  upresent = np.zeros(user_vals.size, dtype=bool)
  upresent[ucode] = True
  ipresent = np.zeros(item_vals.size, dtype=bool)
  ipresent[icode] = True
  new_u = np.cumsum(upresent)[ucode]
  new_i = np.cumsum(ipresent)[icode]
  # Two stable sorts: by time, then by user; equal times keep file order.
  order = np.argsort(times, kind="stable")
  order = order[np.argsort(new_u[order], kind="stable")]
  new_u, new_i = new_u[order], new_i[order]
  stats = sequence_stats(new_u, int(ipresent.sum()))
  stats.update({
      "raw_rows": n_raw,
      "rows_before_since": n_raw - n_since,
      "raw_users": int(user_vals.size),
      "raw_items": int(item_vals.size),
      "removed_users": int(user_vals.size - upresent.sum()),
      "removed_items": int(item_vals.size - ipresent.sum()),
      "removed_rows": int(keep.size - keep.sum()),
      "min_user_actions": min_user_actions,
      "min_item_actions": min_item_actions,
      "since": since or None,
  })
  return Processed(new_u.astype(np.int64), new_i.astype(np.int64),
                   user_vals[upresent], item_vals[ipresent], stats)
