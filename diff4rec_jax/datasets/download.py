"""Fetching raw dataset files: where they come from, checksums, HTTP download.

* `Source` says where a dataset's raw file comes from (URL, file name, raw
  format, zip member), its known md5 / sha256 and, for files no script may
  fetch (Yelp), what to do by hand. The registry of sources is
  `prepare.SOURCES`.
* `download` fetches one URL to a file: progress on stderr, a `.part` file
  that a rerun resumes with an HTTP Range request (restarted when the server
  ignores Range), a checksum check before the file gets its final name, and
  a clear message when the machine is offline or the URL is gone.
* `verify_checksum` / `file_digests` check a file against a known md5 /
  sha256: a mismatch is an error; with no known checksum, or with
  `--skip_checksum`, the file is accepted with a logged warning.

Every failure raises `errors.DataError` naming the URL or file and, for a
download, where to place the file by hand.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import logging
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from typing import Optional

from diff4rec_jax import errors

DataError = errors.DataError

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
