"""Raw datasets: download, checksum, parse and preprocess into the pair format.

    python -m diff4rec_jax.prepare --dataset=ml-1m [--data_dir=data]

This module owns every step from a public raw release to the pair-format file
that `data.read_interactions` reads (`<user> <item>\\n`, users contiguous in
ascending id order, time order within a user, ids 1-based and contiguous):

* `download` fetches one URL to a file: progress on stderr, a `.part` file that
  a rerun resumes with an HTTP Range request (restarted when the server ignores
  Range), a checksum check before the file gets its final name, and a clear
  message when the machine is offline or the URL is gone.
* `parse_raw` reads the raw formats (MovieLens `u.data` and `ratings.dat`,
  Amazon ratings CSV and reviews JSON lines, Steam reviews, Yelp `review.json`)
  into parallel arrays of raw user ids, raw item ids and timestamps.
* `preprocess` treats every rating/review as an implicit interaction, applies
  the paper's filter (users with fewer than `min_user_actions` = 5 actions are
  removed; optionally also an item minimum, iterated to a fixed point), remaps
  ids to 1..N and orders each user's actions by timestamp. Ties keep their
  order in the raw file (stable sort).
* `write_pairs` / `atomic_open` write every output atomically (a temp file in
  the same folder, then `os.replace`), so a crash never leaves a half file
  under the final name.
* `ensure_dataset(name, data_dir)` returns the pair file of a dataset, making
  it (download + preprocess) when it is missing.

Id remapping: users and items are numbered 1..N in ascending order of their
raw id (numeric order for the integer ids of MovieLens, string order for the
string ids of Amazon, Steam and Yelp), after filtering. When the raw ids are
already exactly 1..N (ML-100K, ML-1M users) they are therefore unchanged, and
the ML-1M item numbering equals the staged `ml-1m_item_map.tsv`'s. Maps back to
the raw ids are written next to the data file (`<name>_user_map.tsv`,
`<name>_item_map.tsv`).

Checksums: `SOURCES` records the md5 / sha256 of each raw file where known.
The ML-100K and ML-1M md5s are GroupLens' published values. The sha256s of
`ratings_Beauty.csv`, `steam_reviews.json.gz` and `ml-100k.zip` are the values
the ISG-Siegen/OmniRec loaders pin; they could not be verified here (no
network), so a mismatch names them as such. A known checksum that does not
match is an error (the file is deleted); `--skip_checksum` turns the check off
with a logged warning. Where no checksum is known the file is accepted with a
logged warning.

Yelp cannot be downloaded by a script (the Yelp Open Dataset needs a licence
click-through): `ensure_dataset('yelp', ...)` raises `DataError` saying where to
put `yelp_academic_dataset_review.json`.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import gzip
import hashlib
import http.client
import json
import logging
import os
import re
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from diff4rec_jax import data

DataError = data.DataError

# The paper's filter: users with fewer than 5 actions are removed.
MIN_USER_ACTIONS = 5

_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Source:
  """Where a dataset's raw file comes from and how to read it.

  Attributes:
    url: download URL; '' where the file must be placed by hand.
    filename: the raw file's name under `<data_dir>/raw/<dataset>/`.
    fmt: key of `RAW_FORMATS`.
    member: file inside a zip archive to read ('' for a plain/gzip file).
    md5, sha256: known checksums of the downloaded file ('' = unknown).
    checksum_note: where the checksum comes from (shown on a mismatch).
    manual: instructions for files that cannot be downloaded by script.
    homepage: the dataset's page, for people placing the file by hand.
  """
  url: str
  filename: str
  fmt: str
  member: str = ""
  md5: str = ""
  sha256: str = ""
  checksum_note: str = ""
  manual: str = ""
  homepage: str = ""


SOURCES = {
    "ml-100k": Source(
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        filename="ml-100k.zip", fmt="movielens_tab", member="ml-100k/u.data",
        md5="0e33842e24a9c977be4e0107933c0723",
        sha256=(
            "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"),
        checksum_note=("md5 published by GroupLens; sha256 as pinned by the "
                       "ISG-Siegen/OmniRec loader (not verified here)"),
        homepage="https://grouplens.org/datasets/movielens/100k/"),
    "ml-1m": Source(
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        filename="ml-1m.zip", fmt="movielens_dat", member="ml-1m/ratings.dat",
        md5="c4d9eecfca2ab87c1945afe126590906",
        checksum_note="md5 published by GroupLens",
        homepage="https://grouplens.org/datasets/movielens/1m/"),
    "beauty": Source(
        url=("https://snap.stanford.edu/data/amazon/productGraph/"
             "categoryFiles/ratings_Beauty.csv"),
        filename="ratings_Beauty.csv", fmt="amazon_csv",
        sha256=(
            "17d5232b90444beecfe758ce1446e5300230491f3a88ac802992ca95fc4c150f"),
        checksum_note=("sha256 as pinned by the ISG-Siegen/OmniRec loader "
                       "(not verified here)"),
        homepage=("https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/"
                  "links.html")),
    "steam": Source(
        url="https://cseweb.ucsd.edu/~wckang/steam_reviews.json.gz",
        filename="steam_reviews.json.gz", fmt="steam",
        sha256=(
            "40c6343deedf488689987749c5f8435233da48c163fbaa2a7766c215d584bc61"),
        checksum_note=("sha256 as pinned by the ISG-Siegen/OmniRec loader "
                       "(not verified here)"),
        homepage="https://github.com/kang205/SASRec"),
    "yelp": Source(
        url="", filename="yelp_academic_dataset_review.json", fmt="yelp",
        manual=(
            "The Yelp Open Dataset cannot be downloaded by a script: accept "
            "the licence at https://www.yelp.com/dataset/download, download "
            "the JSON archive (yelp_dataset.tar), extract "
            "'yelp_academic_dataset_review.json' from it and put that file "
            "(optionally gzipped, as .json.gz) at {path}. Then rerun "
            "`python -m diff4rec_jax.prepare --dataset=yelp "
            "--data_dir={data_dir}`. The paper's Yelp (S3-Rec's) keeps only "
            "reviews from 2019-01-01 on: add --since=2019-01-01 for that."),
        homepage="https://www.yelp.com/dataset"),
}


# --------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------
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


# --------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------
def file_digests(path: str) -> dict:
  """{'md5': hex, 'sha256': hex} of a file, read in 1 MiB chunks."""
  md5, sha = hashlib.md5(), hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      md5.update(chunk)
      sha.update(chunk)
  return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def verify_checksum(path: str, md5: str = "", sha256: str = "",
                    note: str = "", skip: bool = False) -> None:
  """Raises DataError if `path` does not match a known md5/sha256.

  With no known checksum, or with `skip`, logs a warning and returns.
  """
  if skip:
    logging.warning("%s: checksum check skipped (--skip_checksum).", path)
    return
  if not md5 and not sha256:
    logging.warning("%s: no known checksum for this file; accepted without "
                    "verification.", path)
    return
  got = file_digests(path)
  for algo, want in (("md5", md5), ("sha256", sha256)):
    if want and got[algo] != want.lower():
      raise DataError(
          f"{path}: {algo} checksum mismatch: expected {want}, got "
          f"{got[algo]}" + (f" ({note})" if note else "") + ". The file is "
          "corrupt or a different release; delete it and download again, "
          "or pass --skip_checksum if you trust it.")


class _Progress:
  """`name: 12.3 / 45.6 MB (27%)` on stderr, redrawn at most twice a second."""

  def __init__(self, name: str, total: Optional[int], done: int,
               enabled: bool):
    self.name, self.total, self.done = name, total, done
    self.enabled = enabled
    self._last = 0.0

  def update(self, n: int) -> None:
    self.done += n
    now = time.monotonic()
    if self.enabled and now - self._last >= 0.5:
      self._last = now
      self._draw(end="")

  def close(self) -> None:
    if self.enabled:
      self._draw(end="\n")

  def _draw(self, end: str) -> None:
    mb = self.done / 1e6
    if self.total:
      msg = (f"\r{self.name}: {mb:.1f} / {self.total / 1e6:.1f} MB "
             f"({100.0 * self.done / self.total:.0f}%)")
    else:
      msg = f"\r{self.name}: {mb:.1f} MB"
    sys.stderr.write(msg + end)
    sys.stderr.flush()


class _Interrupted(Exception):
  """The body ended early; the `.part` file keeps what arrived."""


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _manual_hint(url: str, dest: str) -> str:
  return (f"Download {url} by other means and place it at "
          f"{os.path.abspath(dest)}, then rerun (the file is checksum-"
          "verified where the checksum is known).")


def download(url: str, dest: str, md5: str = "", sha256: str = "",
             checksum_note: str = "", skip_checksum: bool = False,
             retries: int = 3, timeout: float = 60.0, backoff_s: float = 2.0,
             progress: bool = True) -> str:
  """Downloads `url` to `dest`, resumably, and verifies its checksum.

  Bytes go to `dest + '.part'`; an existing `.part` is resumed with
  `Range: bytes=<size>-` (restarted from zero if the server answers 200
  instead of 206). An interrupted transfer is resumed up to `retries` times;
  after that a DataError says to rerun (the `.part` is kept). When the
  transfer is complete the checksum is checked (a mismatch deletes the
  `.part` and raises) and the file is renamed to `dest`. An existing `dest`
  is only verified.

  Returns:
    dest.
  Raises:
    DataError: offline, HTTP error, interrupted transfer or bad checksum; the
      message names the URL and where to place the file by hand.
  """
  if os.path.isfile(dest):
    verify_checksum(dest, md5, sha256, checksum_note, skip_checksum)
    return dest
  os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
  part = dest + ".part"
  for attempt in range(retries + 1):
    try:
      _fetch_once(url, part, timeout, progress)
      break
    except _Interrupted as e:
      have = os.path.getsize(part) if os.path.exists(part) else 0
      if attempt == retries:
        raise DataError(
            f"{url}: download interrupted ({e}); {have:,} bytes kept in "
            f"{part}. Rerun to resume. " + _manual_hint(url, dest)) from None
      logging.warning("%s: %s; resuming from byte %d (retry %d of %d).", url,
                      e, have, attempt + 1, retries)
      time.sleep(backoff_s * (attempt + 1))
  try:
    verify_checksum(part, md5, sha256, checksum_note, skip_checksum)
  except DataError as e:
    os.unlink(part)
    raise DataError(f"{url}: {e} (downloaded file deleted)") from None
  os.replace(part, dest)
  return dest


def _fetch_once(url: str, part: str, timeout: float, progress: bool) -> None:
  """One HTTP request appending to / restarting `part`. Raises _Interrupted."""
  have = os.path.getsize(part) if os.path.exists(part) else 0
  req = urllib.request.Request(url, headers={"User-Agent": "diff4rec_jax"})
  if have:
    req.add_header("Range", f"bytes={have}-")
  try:
    resp = urllib.request.urlopen(req, timeout=timeout)
  except urllib.error.HTTPError as e:
    if e.code == 416 and have:
      total = (e.headers.get("Content-Range") or "").rpartition("/")[2]
      if total.isdigit() and int(total) == have:
        return  # the .part already holds the whole file
      logging.warning("%s: server rejected the resume range (%s); "
                      "restarting.", url, e.headers.get("Content-Range"))
      os.unlink(part)
      raise _Interrupted("resume range rejected") from None
    raise DataError(
        f"{url}: HTTP {e.code} {e.reason}. The file may have moved or the "
        "server is down. " + _manual_hint(url, part[:-5])) from None
  except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
    reason = getattr(e, "reason", e)
    raise DataError(
        f"{url}: cannot connect ({reason}). If this machine is offline or "
        "blocks this host: " + _manual_hint(url, part[:-5])) from None
  with resp:
    status = resp.status
    length = resp.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    mode = "ab"
    if have and status == 206:
      m = _CONTENT_RANGE.search(resp.headers.get("Content-Range", ""))
      if not m or int(m.group(1)) != have:
        logging.warning("%s: unexpected Content-Range %r; restarting.", url,
                        resp.headers.get("Content-Range"))
        os.unlink(part)
        raise _Interrupted("bad Content-Range")
      logging.info("%s: resuming at byte %d.", url, have)
    elif have:
      logging.warning("%s: server ignored the Range request (HTTP %d); "
                      "restarting from zero.", url, status)
      mode, have = "wb", 0
    total = have + length if length is not None else None
    bar = _Progress(os.path.basename(part[:-5]), total, have, progress)
    got = 0
    with open(part, mode) as f:
      try:
        while True:
          try:
            chunk = resp.read(_CHUNK)
          except (http.client.HTTPException, socket.timeout,
                  ConnectionError) as e:
            raise _Interrupted(f"{type(e).__name__} after {have + got:,} "
                               f"bytes of {total or '?'}") from None
          if not chunk:
            break
          f.write(chunk)
          got += len(chunk)
          bar.update(len(chunk))
      finally:
        bar.close()
    if length is not None and got < length:
      raise _Interrupted(f"connection closed after {have + got:,} bytes of "
                         f"{total:,}")


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


def output_paths(name: str, data_dir: str) -> dict:
  """Where `prepare` writes dataset `name`: data, stats and id maps."""
  fname = data.DATASET_FILES.get(name, f"{name}.txt.gz")
  return {
      "data": os.path.join(data_dir, fname),
      "stats": os.path.join(data_dir, f"{name}.stats.json"),
      "user_map": os.path.join(data_dir, f"{name}_user_map.tsv"),
      "item_map": os.path.join(data_dir, f"{name}_item_map.tsv"),
  }


def prepare_file(raw_path: str, fmt: str, out_path: str,
                 stats_path: Optional[str] = None, member: str = "",
                 min_user_actions: int = MIN_USER_ACTIONS,
                 min_item_actions: int = 0, since: Optional[str] = None,
                 user_map_path: Optional[str] = None,
                 item_map_path: Optional[str] = None,
                 name: str = "") -> dict:
  """Raw file -> pair-format file (+ stats JSON, id maps). Returns the stats.

  Every output is written atomically. `out_path` ending in .gz is gzipped.
  """
  t0 = time.time()
  raw = parse_raw(raw_path, fmt, member)
  proc = preprocess(raw, min_user_actions, min_item_actions, since)
  write_pairs(out_path, proc.users, proc.items)
  if user_map_path:
    write_id_map(user_map_path, "user_id\traw_user_id", proc.user_raw)
  if item_map_path:
    write_id_map(item_map_path, "item_id\traw_item_id", proc.item_raw)
  stats = {"dataset": name or os.path.basename(out_path), **proc.stats,
           "file": os.path.basename(out_path), "raw_file": raw.source,
           "raw_format": fmt, "seconds": round(time.time() - t0, 2)}
  if stats_path:
    write_json(stats_path, stats)
  logging.info("%s -> %s: %s", raw.source, out_path, proc.stats)
  return stats


def _existing(name: str, data_dir: str) -> Optional[str]:
  try:
    return data.resolve_path(name, data_dir)
  except DataError:
    return None


def raw_path(name: str, data_dir: str) -> str:
  """Where the raw file of dataset `name` is (to be) stored."""
  return os.path.join(data_dir, "raw", name, SOURCES[name].filename)


def ensure_dataset(name: str, data_dir: Optional[str] = None,
                   force: bool = False,
                   min_user_actions: int = MIN_USER_ACTIONS,
                   min_item_actions: int = 0, since: Optional[str] = None,
                   skip_checksum: bool = False, raw_file: str = "",
                   url: str = "", progress: bool = True) -> str:
  """Returns the pair-format file of dataset `name`, making it if missing.

  An existing file (as `data.resolve_path` finds it) is returned untouched
  unless `force`. Otherwise the raw file is taken from `raw_file`, or from
  `<data_dir>/raw/<name>/`, or downloaded there, and preprocessed into
  `<data_dir>/<data.DATASET_FILES[name]>` with `<name>.stats.json` and id
  maps beside it. 'synthetic-steam' is generated (see synthetic.py).

  Raises:
    DataError: unknown name, download failure, or (Yelp) the raw file must
      be placed by hand; the message says where.
  """
  data_dir = data_dir or data.default_data_dir()
  if not force:
    found = _existing(name, data_dir)
    if found:
      return found
  if name == "synthetic-steam":
    from diff4rec_jax import synthetic  # pylint: disable=g-import-not-at-top
    return synthetic.write_synthetic(data_dir)
  if name not in SOURCES:
    raise DataError(f"--dataset: unknown dataset {name!r}; expected one of "
                    f"{sorted(SOURCES) + ['synthetic-steam']}.")
  src = SOURCES[name]
  path = raw_file or raw_path(name, data_dir)
  if not raw_file and not os.path.isfile(path) and os.path.isfile(path + ".gz"):
    path += ".gz"
  if not os.path.isfile(path):
    if raw_file:
      raise DataError(f"--raw_file: {raw_file} not found.")
    if not (url or src.url):
      raise DataError(f"dataset {name!r} needs a manual download. " +
                      src.manual.format(path=os.path.abspath(path),
                                        data_dir=data_dir))
    download(url or src.url, path, src.md5, src.sha256, src.checksum_note,
             skip_checksum, progress=progress)
  elif src.url and not raw_file:
    verify_checksum(path, src.md5, src.sha256, src.checksum_note,
                    skip_checksum)
  elif raw_file and (src.md5 or src.sha256):
    logging.warning(
        "--raw_file %s: checksum not checked (a file given by hand may be "
        "another release of %s); the published file's %s is %s. Place it "
        "at %s instead, without --raw_file, to have it verified.", raw_file,
        name, "sha256" if src.sha256 else "md5", src.sha256 or src.md5,
        os.path.abspath(raw_path(name, data_dir)))
  out = output_paths(name, data_dir)
  stats = prepare_file(path, src.fmt, out["data"], out["stats"], src.member,
                       min_user_actions, min_item_actions, since,
                       out["user_map"], out["item_map"], name=name)
  logging.info("wrote %s (%s users, %s items, %s actions)", out["data"],
               stats["users"], stats["items"], stats["actions"])
  return out["data"]


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------
def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_enum("dataset", None, sorted(SOURCES) + ["synthetic-steam"],
                    "Dataset to download and preprocess.")
  flags.DEFINE_string("data_dir", None, "Output folder (default "
                      "$DIFF4REC_DATA_DIR or ./data); raw files go to "
                      "<data_dir>/raw/<dataset>/.")
  flags.DEFINE_integer("min_user_actions", MIN_USER_ACTIONS,
                       "Users with fewer actions are removed (paper: 5).")
  flags.DEFINE_integer("min_item_actions", 0,
                       "Items with fewer actions are removed (0: keep all).")
  flags.DEFINE_string("since", "", "Drop actions before this date "
                      "(YYYY-MM-DD); S3-Rec's Yelp uses 2019-01-01.")
  flags.DEFINE_bool("force", False, "Rebuild even if the output exists.")
  flags.DEFINE_bool("skip_checksum", False, "Do not verify the raw file's "
                    "checksum (a warning is logged).")
  flags.DEFINE_string("raw_file", "", "Use this local raw file instead of "
                      "downloading.")
  flags.DEFINE_string("url", "", "Override the download URL (a mirror).")
  flags.mark_flag_as_required("dataset")
  return flags.FLAGS


def main(argv):
  del argv
  fl = _FLAGS
  try:
    path = ensure_dataset(
        fl.dataset, fl.data_dir or data.default_data_dir(), force=fl.force,
        min_user_actions=fl.min_user_actions,
        min_item_actions=fl.min_item_actions, since=fl.since or None,
        skip_checksum=fl.skip_checksum, raw_file=fl.raw_file, url=fl.url)
  except DataError as e:
    sys.stderr.write(f"error: {e}\n")
    return 1
  print(path)
  return 0


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  _FLAGS = _define_flags()
  app.run(main)
