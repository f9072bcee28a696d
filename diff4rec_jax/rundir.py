"""Guards of a workdir: one process at a time, and the data it was made on.

* `lock(workdir)`: a lock file `workdir/run.lock` holding the owner's pid,
  host and start time, created atomically (a hard link of a finished temp
  file, so no reader ever sees it half written) and removed on exit. A
  second process on the same workdir is refused, naming the owner. A lock
  left by a killed process (its pid is gone on this host) is taken over
  with a warning; a lock from another host cannot be checked and is named
  so that the user can remove it. Only process 0 of a multi-host run locks.
* `read_jsonl(path)`: the records of a metrics file, without a last line
  that a kill cut mid-write (dropped with a warning naming the file).
* `check_data(workdir, ds)`: the content hash of the loaded interactions and
  of the leave-one-out split, stored in `workdir/data_fingerprint.json` on
  the first run and compared on every rerun. `config.data.dir`,
  `config.data.path` and `$DIFF4REC_DATA_DIR` may change (moved files); the
  content may not. `check_run_data(workdir, ds)`: the same read-only check
  of another run (a teacher, a run served by `recommend`), by results.json's
  counts for a run from before fingerprints. Both end a refusal with
  `advice`, what the user can do.

No jax: a driver (train.py) calls these with `is_chief` from sharding.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from typing import Optional

from absl import logging
import numpy as np

from diff4rec_jax import errors

LOCK_FILE = "run.lock"
FINGERPRINT_FILE = "data_fingerprint.json"
# In a finished run put back from the repository's archive
# (benchmarks/archive.py): its results and logs without its checkpoints.
ARCHIVED_FILE = "ARCHIVED"


class WorkdirLocked(errors.UserError):
  """Another live process holds the workdir's lock."""


class DataMismatch(errors.UserError):
  """The workdir was made on data with other content."""


# ----------------------------------------------------------------------------
# Lock
# ----------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
  """Whether process `pid` runs on this host (another user's counts)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:      # alive, another user's
    return True
  return True


def read_json(path: str):
  """The JSON value in file `path`, or None if it is missing or unreadable."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def acquire(workdir: str) -> str:
  """Takes `workdir/run.lock`; returns its path. Raises WorkdirLocked."""
  path = os.path.join(workdir, LOCK_FILE)
  me = {"pid": os.getpid(), "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
  tmp = f"{path}.{me['pid']}.tmp"
  with open(tmp, "w") as f:
    json.dump(me, f)
  try:
    for _ in range(3):
      try:
        _create(tmp, path, me)
        return path
      except FileExistsError:
        pass
      owner = read_json(path)
      if owner is None:
        # Unreadable or vanished since: take it if it is still there and
        # not ours to judge; the next link attempt decides.
        if os.path.exists(path):
          logging.warning("%s: unreadable lock file; taking it over", path)
          _unlink(path)
        continue
      same_host = owner.get("host") == me["host"]
      pid = int(owner.get("pid", -1))
      if same_host and (pid == me["pid"] or not pid_alive(pid)):
        logging.warning("%s: stale lock of process %d on %s (started %s, no "
                        "longer running); taking it over", path, pid,
                        owner.get("host"), owner.get("started"))
        _unlink(path)
        continue
      hint = ("" if same_host else
              " If that process is gone (its host cannot be checked from "
              f"here), delete {path}.")
      raise WorkdirLocked(
          f"workdir {workdir} is in use by process {pid} on "
          f"{owner.get('host')} (started {owner.get('started')}; lock file "
          f"{path}); two runs on one workdir would mix their checkpoints and "
          f"logs. Wait for it to end or use another --workdir.{hint}")
    raise WorkdirLocked(f"{path}: could not take the lock (another process "
                        "keeps replacing it)")
  finally:
    _unlink(tmp)


def _create(tmp: str, path: str, me: dict) -> None:
  """Creates `path` holding `me`; FileExistsError if it exists."""
  try:
    os.link(tmp, path)           # atomic, and never seen half written
  except FileExistsError:
    raise
  except OSError:
    # No hard links (some FUSE mounts, e.g. gcsfuse): exclusive create.
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(fd, "w") as f:
      json.dump(me, f)


def release(path: str) -> None:
  """Removes the lock at `path` if it is still this process's."""
  owner = read_json(path)
  if owner and owner.get("pid") == os.getpid() and (
      owner.get("host") == socket.gethostname()):
    _unlink(path)


def _unlink(path: str) -> None:
  try:
    os.unlink(path)
  except FileNotFoundError:
    pass


@contextlib.contextmanager
def lock(workdir: str, enabled: bool = True):
  """Holds the workdir's lock for the block (`enabled`=False: a no-op, for
  processes other than 0 of a multi-host run)."""
  if not enabled:
    yield
    return
  path = acquire(workdir)
  try:
    yield
  finally:
    release(path)


# ----------------------------------------------------------------------------
# Run logs
# ----------------------------------------------------------------------------
def read_jsonl(path: str) -> list:
  """The JSON records of a .jsonl run file (metrics.jsonl,
  generator_metrics.jsonl). A last line cut by a kill mid-write is dropped
  with a warning; a bad line before it is an error naming file and line."""
  with open(path) as f:
    lines = f.read().split("\n")
  out = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      out.append(json.loads(line))
    except json.JSONDecodeError as e:
      if any(l.strip() for l in lines[i + 1:]):
        raise errors.UserError(
            f"{path}:{i + 1}: not a JSON record ({e}); repair or delete that "
            "line to resume.") from e
      logging.warning("%s:%d: dropping a cut last line (a kill while it was "
                      "written): %r", path, i + 1, line[:80])
  return out


# ----------------------------------------------------------------------------
# Data fingerprint
# ----------------------------------------------------------------------------
def _sha(*arrays) -> str:
  h = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def fingerprint(ds) -> dict:
  """Content hashes of a `data.SequenceData`: `interactions` (users and
  their time-ordered items) and `split` (every user's train end and
  valid/test targets), plus counts and the source, for messages."""
  return {
      "interactions": _sha(ds.user_ids.astype(np.int64),
                           ds.indptr.astype(np.int64),
                           ds.items.astype(np.int32)),
      "split": _sha(ds.split_end("train").astype(np.int64),
                    ds.targets("valid").astype(np.int32),
                    ds.targets("test").astype(np.int32)),
      "users": int(ds.num_users), "actions": int(ds.items.size),
      "items": int(ds.num_items), "source": os.path.abspath(ds.source or ""),
  }


_RESUME_ADVICE = (
    "Refusing to resume; point config.data (or $DIFF4REC_DATA_DIR) at the "
    "original file, or use another --workdir. A moved or renamed file with "
    "the same content is accepted.")


def check_data(workdir: str, ds, write: bool = True,
               advice: Optional[str] = None) -> None:
  """Refuses data whose content differs from what the workdir was made on;
  records the fingerprint on the first run (`write`: process 0 only).
  `advice` ends a refusal's message, what the user can do (default: how to
  resume this workdir)."""
  path = os.path.join(workdir, FINGERPRINT_FILE)
  now = fingerprint(ds)
  resume = advice is None
  if os.path.exists(path):
    try:
      with open(path) as f:
        saved = json.load(f)
    except (OSError, ValueError) as e:
      raise errors.UserError(
          f"{path}: unreadable ({e}). "
          f"{'Use a fresh workdir.' if resume else advice}".rstrip()) from e
    diff = [k for k in ("interactions", "split") if saved.get(k) != now[k]]
    if diff:
      raise DataMismatch(
          f"workdir {workdir} was made on other data: {path} records "
          f"{saved.get('source')} ({saved.get('users')} users, "
          f"{saved.get('actions')} actions, {diff[0]} sha256 "
          f"{str(saved.get(diff[0]))[:16]}...), this run loaded "
          f"{now['source']} ({now['users']} users, {now['actions']} "
          f"actions, {diff[0]} sha256 {now[diff[0]][:16]}...). "
          f"{_RESUME_ADVICE if resume else advice}".rstrip())
    if saved.get("source") != now["source"]:
      logging.info("data moved: %s -> %s (same content)", saved.get("source"),
                   now["source"])
    return
  if write:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(now, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def check_run_data(workdir: str, ds, advice: str = "") -> None:
  """Refuses `ds` unless the run in `workdir` was made on the same data: its
  fingerprint, or for a run from before fingerprints the user, action and
  item counts of its results.json (with a warning; with neither file, a
  warning that nothing could be checked). `advice` ends a refusal."""
  if os.path.isfile(os.path.join(workdir, FINGERPRINT_FILE)):
    check_data(workdir, ds, write=False, advice=advice)
    return
  res_path = os.path.join(workdir, "results.json")
  if not os.path.exists(res_path):
    logging.warning("%s has neither %s nor results.json: its data is not "
                    "checked", workdir, FINGERPRINT_FILE)
    return
  results = read_json(res_path)
  if not isinstance(results, dict):
    raise errors.UserError(f"{res_path}: unreadable, so the run's data "
                           f"cannot be checked. {advice}".rstrip())
  saved = results.get("dataset", {})
  now = {"users": int(ds.num_users), "actions": int(ds.items.size),
         "items": int(ds.num_items)}
  if any(saved.get(k) != v for k, v in now.items()):
    raise DataMismatch(
        f"the run in {workdir} was made on other data: its results.json "
        f"records {[saved.get(k) for k in now]} users, actions, items; "
        f"this run has {list(now.values())}. {advice}".rstrip())
  logging.warning("%s has no %s: its data checked by counts only", workdir,
                  FINGERPRINT_FILE)
