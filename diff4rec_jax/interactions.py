"""Interaction text files: decoding and parsing the two formats a run reads.

* `read_bytes` returns a file's bytes, gunzipped when it starts with the gzip
  magic (so `.gz` or not does not matter).
* `parse_interactions` turns the text into parallel `users`, `items` id
  arrays with vectorized byte arithmetic (no Python loop over lines). It
  reads the *pair* format (`user item` per line, time-ordered within a user)
  and the *per-user* format (`user item item ...`, one line per user), tells
  them apart (`fmt='auto'`), and refuses whatever else it meets (a BOM, a
  negative or non-integer id, a raw ratings file, a file whose line breaks
  are missing) with an `errors.DataError` naming the file and 1-based line.

`data.read_interactions` builds a `data.SequenceData` from these arrays.
"""

from __future__ import annotations

import gzip
import zlib

import numpy as np

from diff4rec_jax import errors

DataError = errors.DataError

# Ids are stored as int32.
MAX_ID = 2**31 - 1


# A file that parses as one user with more interactions than this is refused
# (missing line breaks, not a dataset).
MAX_SINGLE_USER = 1000


def read_bytes(path: str) -> bytes:
  """The bytes of `path`, gunzipped if they start with the gzip magic."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise DataError(f"{path}: cannot read: {e}") from e
  if raw[:2] == b"\x1f\x8b":
    try:
      raw = gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
      raise DataError(
          f"{path}: gzip stream is corrupt or truncated ({e}); download the "
          "file again.") from e
  return raw


_ALLOWED = np.zeros(256, dtype=bool)
_ALLOWED[list(b"0123456789 \t\r\n")] = True
_SPACE = np.zeros(256, dtype=bool)
_SPACE[list(b" \t\r\n")] = True


def parse_interactions(raw: bytes, source: str = "<bytes>",
                       fmt: str = "auto"):
  """Parses interaction text into parallel `users`, `items` arrays.

  Both formats reduce to the same rule: on each non-blank line the first field
  is the user and every following field an item, in time order. The pair
  format additionally requires exactly two fields a line.

  Args:
    raw: the file's bytes (already decompressed).
    source: file name used in error messages.
    fmt: "pair", "per_user" or "auto" (pair if every line has two fields).

  Returns:
    (users [nnz] int64, items [nnz] int64, fmt) in file order.

  Raises:
    DataError naming the source and the 1-based line of the first problem.
  """
  if fmt not in ("auto", "pair", "per_user"):
    raise DataError(f"config.data.format: {fmt!r} is not one of "
                    "'auto', 'pair', 'per_user'")
  if raw.startswith(b"\xef\xbb\xbf"):
    raise DataError(f"{source}:1: file starts with a UTF-8 byte-order mark; "
                    "save it as plain ASCII without a BOM.")
  if b"\r" in raw:
    # CR-only line ends (classic Mac) end lines too; CRLF stays one end.
    raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
  buf = np.frombuffer(raw, dtype=np.uint8)
  if buf.size == 0 or not (~_SPACE[buf]).any():
    raise DataError(f"{source}: file is empty (no interactions).")
  newline_cum = np.cumsum(buf == ord("\n"), dtype=np.int64)  # line index - 1
  bad = ~_ALLOWED[buf]
  if bad.any():
    pos = int(np.argmax(bad))
    line = int(newline_cum[pos] - (buf[pos] == ord("\n"))) + 1
    line_start = raw.rfind(b"\n", 0, pos) + 1
    line_end = raw.find(b"\n", pos)
    line_end = len(raw) if line_end < 0 else line_end
    text = raw[max(line_start, pos - 20):min(line_end, pos + 20)].decode(
        "utf-8", "replace")
    kind = ("a negative id" if buf[pos] == ord("-") else
            "a non-integer id" if buf[pos] == ord(".") else
            f"unexpected byte {bytes([buf[pos]])!r}")
    col = pos - line_start + 1
    raise DataError(
        f"{source}:{line}: {kind} (column {col} near {text!r}); expected "
        "whitespace-separated positive integer ids.")
  is_tok = ~_SPACE[buf]
  starts = np.flatnonzero(is_tok & np.concatenate([[True], ~is_tok[:-1]]))
  # Line number (0-based) of each token; a token never starts on '\n'.
  tok_line = newline_cum[starts]
  counts = np.bincount(tok_line)
  lines_with = np.flatnonzero(counts)
  if (counts[lines_with] < 2).any():
    line = int(lines_with[np.argmax(counts[lines_with] < 2)]) + 1
    raise DataError(f"{source}:{line}: expected a user id and at least one "
                    "item id, found one field.")
  auto = fmt == "auto"
  if auto:
    fmt = "pair" if (counts[lines_with] == 2).all() else "per_user"
  elif fmt == "pair" and (counts[lines_with] != 2).any():
    line = int(lines_with[np.argmax(counts[lines_with] != 2)]) + 1
    raise DataError(f"{source}:{line}: pair format expects exactly two fields "
                    f"(user item), found {int(counts[line - 1])}; set "
                    "config.data.format='per_user' for one line per user.")
  toks = raw.split()
  values = np.array(toks, dtype="S")
  digits = np.char.str_len(np.char.lstrip(values, b"0"))
  too_long = digits > 10
  if not too_long.any():
    values = values.astype(np.int64)
    too_long = values > MAX_ID
  if too_long.any():
    i = int(np.argmax(too_long))
    raise DataError(f"{source}:{int(tok_line[i]) + 1}: id "
                    f"{toks[i].decode()} is out of range (ids must be at most "
                    f"{MAX_ID}).")
  if (values <= 0).any():
    i = int(np.argmax(values <= 0))
    raise DataError(f"{source}:{int(tok_line[i]) + 1}: id {int(values[i])} is "
                    "not positive; ids start at 1 (0 is padding).")
  first = np.concatenate([[True], tok_line[1:] != tok_line[:-1]])
  line_user = values[first]
  if auto and fmt == "per_user" and (
      (counts[lines_with] == 2).sum() * 2 > len(lines_with)):
    # Mostly pairs: the longer lines are mistakes in a pair file, not a
    # per-user file; name the first of them.
    k = int(np.argmax(counts[lines_with] > 2))
    raise DataError(
        f"{source}:{int(lines_with[k]) + 1}: {int(counts[lines_with[k]])} "
        f"fields, but {int((counts[lines_with] == 2).sum())} of "
        f"{len(lines_with)} lines have two (the pair format `user item`). "
        "Fix or remove that line; a raw ratings file (user item rating "
        "timestamp) must be converted with `python -m "
        "diff4rec_jax.datasets.prepare`.")
  if fmt == "per_user":
    uniq, first_at, cnt = np.unique(line_user, return_index=True,
                                    return_counts=True)
    if (cnt > 1).any():
      # A user on several lines with 3+ fields: most likely a raw ratings
      # file (user item rating timestamp), not one line per user.
      dup = int(np.argmax(cnt > 1))
      lines = lines_with[first_at[dup]] + 1
      raise DataError(
          f"{source}:{lines}: user {int(uniq[dup])} starts {int(cnt[dup])} "
          "lines and some lines have more than two fields"
          + (" (format auto-detected as per_user)" if auto else "") +
          ". In the per-user format each user has one line `user item item "
          "...`; in the pair format every line is `user item`. A raw ratings "
          "file (user item rating timestamp) must be converted with "
          "`python -m diff4rec_jax.datasets.prepare`.")
  # Index of the line (in token-line order) that owns each token.
  owner = np.cumsum(first) - 1
  users = line_user[owner][~first]
  items = values[~first]
  if items.size > MAX_SINGLE_USER and (users == users[0]).all():
    raise DataError(
        f"{source}: the whole file parses as one user ({int(users[0])}) with "
        f"{items.size} interactions on {len(lines_with)} line(s): its line "
        "breaks are probably missing or not LF, CRLF or CR (e.g. a file "
        "joined into one line). A dataset needs many users, one `user item` "
        "pair (or one `user item item ...` line) per line.")
  return users, items, fmt
