"""Keeps the experiment runs' results in the repository, and puts them back.

The background grids (benchmarks/experiments.sh) run in /work/runs, outside
the repository. That folder lives on one machine: on 2026-12-07 a session
started on a fresh machine, and every finished cell of sessions 12-20 was
gone (their figures survive only in the committed reports). This script
keeps what the reports, the grid's status and its time estimates read from
a run, small text files, under `results/runs/` in the same layout:

  python benchmarks/archive.py save /work/runs results/runs     # then commit
  python benchmarks/archive.py carry /work/runs results/inflight  # never commit
  python benchmarks/archive.py save /work/runs results/runs \
      --inflight=results/inflight                 # both (archive_loop.sh)
  python benchmarks/archive.py restore results/runs /work/runs \
      --inflight=results/inflight

`save` copies, from every finished run under RUNS (a folder holding a
results.json with test and valid metrics), the files in RUN_FILES, and from
every other folder the root files in ROOT_FILES (a grid's log, the frozen
choice of the paper setting's augmentation). A grid log is merged with the
archived one (no record is dropped; records in time order); another root
file that changed is replaced, with a line that says so. A workdir that is
a link to another run under RUNS is kept as a `link_to` file naming its
target, relative to RUNS. Checkpoints, augmented copies and generator files
stay behind: they are large. What needs them refuses a restored run with a
message (serving it, using it as a teacher: recommender.restore_best_params),
and a cell that would have reused a sibling's copies or generator builds its
own.

`restore` puts each archived run back where RUNS has no workdir of that
name (a workdir that exists, finished or being rerun, is left alone), with
an ARCHIVED file in it that says so; the grid runner then skips it as
finished, and the reports count it. A root file that RUNS lacks is copied.
Only the grid-log records of the cells it put back are merged into RUNS's
log, in time order: the lost machine's attempts of a cell that was not
finished there would add to the time of its rerun here. A missing archive
is an empty one. Neither command deletes anything. `save` leaves out runs
that `restore` put back (the archive has them).

`carry` is for the cells still running. A session stops at a fixed time,
and the next one may start on a fresh machine: a cell not finished by then
started over, and a cell longer than a session (a full-CE ML-1M cell is
about 2 hours here) could never finish. `carry` packs each unfinished
workdir under RUNS as a .tar.gz split into parts of at most PART_MB, named
by DEST/<workdir>.pack.json (30 MB for a paper-setting Yelp cell, 90 MB
for a strong-setting Beauty one). A pack holds what a resume reads:

  * of each checkpoint folder, the newest complete latest save and the
    newest best save at or before it; of a finished phase (warmup/,
    generator/), its best save alone; a folder over MAX_CKPT_MB stays out
    and its phase starts over;
  * the copies (augmented.npz); once they exist, the generator and warm-up
    that made them are not read again, and only their metrics go in;
  * the run's small files; not its event files, its lock, nor files being
    written.

A workdir unchanged since its pack is not packed again. A pack cut by a
file that changed while it was read is dropped, and the previous one
kept. The pack of a finished cell is removed once the archive (--archive)
has the cell; that of a workdir deleted from RUNS is removed.

Packs go into the main checkout's working tree and are never committed:
they are what an earlier session's uncommitted work brings to the next
one, where a machine's files do not. `restore --inflight=DEST` unpacks
each where RUNS has no such workdir, after the finished runs are put back
(a cell finished after its last pack is the archive's), checking its
parts against the listing's SHA-256, and merges its grid-log records like
theirs; the cell then resumes from its last good checkpoint
(checkpointing.py checks each save against its manifest).
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from typing import Iterator, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from benchmarks import grid  # pylint: disable=g-import-not-at-top
from diff4rec_jax import checkpointing  # pylint: disable=g-import-not-at-top
from diff4rec_jax import generator  # pylint: disable=g-import-not-at-top
from diff4rec_jax import pool  # pylint: disable=g-import-not-at-top
from diff4rec_jax import rundir  # pylint: disable=g-import-not-at-top

RUN_FILES = ("results.json", "config.json", "metrics.jsonl",
             rundir.FINGERPRINT_FILE,
             os.path.join("generator", "generator_metrics.jsonl"))
GRID_LOG = "grid_log.jsonl"
ROOT_FILES = (GRID_LOG, "augmentation_overrides.txt", "variants.tsv",
              "CHOICE.md")
LINK_FILE = "link_to"
MARK_FILE = rundir.ARCHIVED_FILE
# Folders under RUNS that hold no runs: pinned worktrees, the XLA cache.
_SKIP_PREFIXES = ("wt-", "jit_cache")
_PARTIAL = ".restoring"      # a restore's folder before it is complete
# A pack is a listing (<workdir>.pack.json: its parts, bytes, SHA-256)
# and the parts of one .tar.gz, each at most PART_MB: files of that size
# travel where a 100 MB one might not.
PACK_SUFFIX = ".pack.json"
_PART_SUFFIX = ".tgz-part"
PART_MB = 40
# Left out of a pack: the event files and the lock of the process that
# was running, and Orbax's checkpoints still being written.
_UNPACKED = ("tb", "run.lock")
_ORBAX_TMP = ".orbax-checkpoint-tmp"
# Files being written: pool.py's copies, runner.py's links, atomic writes.
_TEMP_ENDINGS = (".tmp", ".tmp.npz", ".link")
# A checkpoint folder whose kept saves are larger is left out of a pack,
# and its phase starts over: the generator of a strong-setting Beauty cell
# saves 200 MB (VAE and Adam state) and trains in about 10 minutes; its
# SASRec saves 39 MB (54,543 items), a paper-setting Yelp SASRec 12 MB.
MAX_CKPT_MB = 100
# The phases that make a run's copies (pool.AUGMENTED_FILE).
_POOL_PHASES = ("generator", "warmup")


def is_finished(workdir: str) -> bool:
  """Whether `workdir` holds a finished run's results.json (the grid's
  rule: grid.finished_results)."""
  return grid.finished_results(workdir) is not None


def _walk(runs: str) -> Iterator[tuple]:
  """(relative path, absolute path) of every folder under `runs`, links to
  folders included but not followed, worktrees and caches left out. A
  run's workdir (it holds a config.json) is not entered: its subfolders
  are its phases (generator/, warmup/ with results of their own) and its
  checkpoints, parts of that run and not runs of their own."""
  for dirpath, dirnames, filenames in os.walk(runs):
    rel_dir = os.path.relpath(dirpath, runs)
    if rel_dir != "." and "config.json" in filenames:
      dirnames[:] = []
      continue
    keep = []
    for d in sorted(dirnames):
      if ((rel_dir == "." and d.startswith(_SKIP_PREFIXES))
          or d.endswith(_PARTIAL)):
        continue
      path = os.path.join(dirpath, d)
      yield os.path.normpath(os.path.join(rel_dir, d)), path
      if not os.path.islink(path):
        keep.append(d)
    dirnames[:] = keep


def _write(dst: str, write, mtime: Optional[float] = None) -> None:
  """Writes `dst` through a temporary file of its own, atomically (with
  the modification time `mtime`, if given, from its first moment)."""
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst),
                             prefix="." + os.path.basename(dst), suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
    os.chmod(tmp, 0o644)           # mkstemp's 0600 is for secrets
    if mtime is not None:
      os.utime(tmp, (mtime, mtime))
    os.replace(tmp, dst)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def _copy(src: str, dst: str) -> bool:
  """Copies `src` to `dst` unless `dst` has its content; True if copied."""
  if os.path.isfile(dst) and filecmp.cmp(src, dst, shallow=False):
    return False
  with open(src, "rb") as f:
    data = f.read()
  _write(dst, lambda out: out.write(data))
  return True


def _records(path: str) -> list:
  """The lines of a grid log (blank ones left out)."""
  if not os.path.isfile(path):
    return []
  with open(path) as f:
    return [l for l in f.read().splitlines() if l.strip()]


def _time(line: str) -> str:
  try:
    return str(json.loads(line).get("time", ""))
  except (ValueError, AttributeError):
    return ""


def _merge_log(lines: list, dst: str) -> int:
  """Writes `dst` as its records plus those of `lines` it lacks, in time
  order (stable; ISO times); returns how many were added."""
  have = _records(dst)
  seen = set(have)
  new = [l for l in lines if l not in seen]
  if new:
    merged = sorted(have + list(dict.fromkeys(new)), key=_time)
    text = "".join(l + "\n" for l in merged)
    _write(dst, lambda out: out.write(text.encode()))
  return len(set(new))


def _clear(folder: str, names) -> None:
  """Removes the files `names` from `folder`, and subfolders left empty."""
  for name in names:
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      os.unlink(path)
      sub = os.path.dirname(path)
      if sub != folder and not os.listdir(sub):
        os.rmdir(sub)


def save(runs: str, dest: str, out=None) -> dict:
  """Copies the finished runs' small files from `runs` to `dest`."""
  out = out or sys.stdout
  runs = os.path.realpath(runs)
  counts = {"runs": 0, "links": 0, "root files": 0, "log records": 0}
  for folder in [runs] + [p for _, p in _walk(runs)
                          if not os.path.islink(p)]:
    for name in ROOT_FILES:
      src = os.path.join(folder, name)
      if not os.path.isfile(src):
        continue
      dst = os.path.join(dest, os.path.relpath(src, runs))
      if name == GRID_LOG:
        counts["log records"] += _merge_log(_records(src), dst)
        continue
      if os.path.isfile(dst) and not filecmp.cmp(src, dst, shallow=False):
        print(f"archive.py: {os.path.relpath(src, runs)} changed; the "
              "archive takes the new one", file=out)
      counts["root files"] += _copy(src, dst)
  for rel, path in _walk(runs):
    # A run put back by `restore` is the archive's already (and one moved
    # elsewhere in RUNS must not come back as a new run).
    if not is_finished(path) or os.path.exists(os.path.join(path,
                                                            MARK_FILE)):
      continue
    arch = os.path.join(dest, rel)
    if os.path.islink(path):
      target = os.path.relpath(os.path.realpath(path), runs)
      if target.startswith(os.pardir):
        continue            # a run outside RUNS: not ours to keep
      _clear(arch, RUN_FILES)           # it was a run of its own before
      _write(os.path.join(arch, LINK_FILE),
             lambda f, t=target: f.write((t + "\n").encode()))
      counts["links"] += 1
      continue
    _clear(arch, (LINK_FILE,))          # it was a link before
    for name in RUN_FILES:
      src = os.path.join(path, name)
      if os.path.isfile(src):
        _copy(src, os.path.join(arch, name))
    counts["runs"] += 1
  return counts


def _cell_of(line: str) -> Optional[str]:
  try:
    return json.loads(line).get("cell")
  except (ValueError, AttributeError):
    return None


def restore(archive: str, runs: str, inflight: Optional[str] = None) -> dict:
  """Puts the archived runs back into `runs` where it has no such workdir,
  then the unfinished ones packed in `inflight` (`carry`)."""
  archive = os.path.abspath(archive)
  counts = {"runs": 0, "links": 0, "root files": 0, "log records": 0,
            "left alone": 0}
  if inflight is not None:
    counts["unfinished runs"] = 0
  restored = set()              # relative workdirs put back by this call
  if not os.path.isdir(archive):
    print(f"archive.py: no archive at {archive}; nothing to restore")
    if inflight is not None:
      counts["unfinished runs"] = len(restore_inflight(inflight, runs))
    return counts
  for dirpath, _, filenames in sorted(os.walk(archive)):
    rel = os.path.relpath(dirpath, archive)
    is_run = "results.json" in filenames or LINK_FILE in filenames
    if rel == "." or not is_run:
      continue
    dst = os.path.join(runs, rel)
    if os.path.lexists(dst):
      counts["left alone"] += 1
      continue
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    restored.add(rel)
    if "results.json" not in filenames:
      with open(os.path.join(dirpath, LINK_FILE)) as f:
        target = os.path.join(os.path.abspath(runs), f.read().strip())
      os.symlink(target, dst)
      counts["links"] += 1
      continue
    tmp = dst + _PARTIAL
    shutil.rmtree(tmp, ignore_errors=True)
    for name in RUN_FILES:
      src = os.path.join(dirpath, name)
      if os.path.isfile(src):
        _copy(src, os.path.join(tmp, name))
    with open(os.path.join(tmp, MARK_FILE), "w") as f:
      f.write(f"restored from {archive}; checkpoints, copies and generator "
              "files were not archived\n")
    os.replace(tmp, dst)        # the run's files appear all at once
    counts["runs"] += 1
  if inflight is not None:
    unfinished = restore_inflight(inflight, runs)
    counts["unfinished runs"] = len(unfinished)
    restored |= unfinished
  for dirpath, _, filenames in os.walk(archive):
    rel = os.path.relpath(dirpath, archive)
    for name in filenames:
      if name not in ROOT_FILES:
        continue
      src, dst = os.path.join(dirpath, name), os.path.join(runs, rel, name)
      if name == GRID_LOG:
        lines = [l for l in _records(src) if os.path.normpath(
            os.path.join(rel, str(_cell_of(l)))) in restored]
        counts["log records"] += _merge_log(lines, dst)
      elif not os.path.exists(dst):
        counts["root files"] += _copy(src, dst)
  return counts


def _saved_steps(folder: str) -> list:
  """The steps saved in a checkpoint folder (latest/ or best/) whose
  manifest is written (checkpointing.write_manifest: the save is
  complete), newest first."""
  if not os.path.isdir(folder):
    return []
  return sorted((int(d) for d in os.listdir(folder) if d.isdigit() and
                 os.path.isfile(os.path.join(folder, d,
                                             checkpointing.MANIFEST))),
                reverse=True)


def _kept_steps(ckpt: str, finished: bool) -> dict:
  """{'latest': steps, 'best': steps} a pack keeps of one checkpointer's
  folder `ckpt` (holding latest/ and best/): the newest complete latest
  save and the newest best save at or before it, which is what a resume
  reads (checkpointing.Checkpointer.restore); of a finished phase (a
  warm-up, read through restore_best) its newest best save alone."""
  latest = [] if finished else _saved_steps(os.path.join(ckpt, "latest"))[:1]
  best = [s for s in _saved_steps(os.path.join(ckpt, "best"))
          if not latest or s <= latest[0]][:1]
  return {"latest": latest, "best": best}


def _size(ckpt: str, steps: dict) -> int:
  """Bytes of the saves `steps` ({'latest': [...], 'best': [...]})."""
  total = 0
  for kind, kind_steps in steps.items():
    for s in kind_steps:
      for dirpath, _, filenames in os.walk(os.path.join(ckpt, kind, str(s))):
        for name in filenames:
          try:
            total += os.path.getsize(os.path.join(dirpath, name))
          except OSError:
            pass
  return total


def _pack_members(workdir: str, max_ckpt_mb: Optional[float] = None,
                  left_out: Optional[list] = None) -> list:
  """(path, name in the pack) of every file of `workdir` that a pack
  keeps, in a stable order. Checkpoint folders whose kept saves exceed
  `max_ckpt_mb` are left out (named in `left_out`)."""
  left_out = [] if left_out is None else left_out
  max_ckpt_mb = MAX_CKPT_MB if max_ckpt_mb is None else max_ckpt_mb
  members = []
  finished = []                   # phases (warmup/...) with results.json
  unfinish = []                   # ... whose checkpoint is left out
  kept = {}                       # a checkpointer's folder -> _kept_steps
  # Once the copies are made (train.py reads the cached pool before any
  # phase), the phases that made them are not read again: only their
  # metrics files are packed. (Should the pool's hash ever stop matching,
  # the resumed run makes them again: their results.json stays out, so
  # neither phase reads as finished without its checkpoint.) A sibling
  # cell that would have shared this generator's top-M trains its own,
  # as after a restore of finished runs: 32 MB for strong Beauty against
  # 10 minutes.
  has_pool = os.path.isfile(os.path.join(workdir, pool.AUGMENTED_FILE))
  for dirpath, dirnames, filenames in os.walk(workdir):
    rel_dir = os.path.relpath(dirpath, workdir).split(os.sep)
    if has_pool and rel_dir[0] in _POOL_PHASES:
      dirnames[:] = []
      members.extend((os.path.join(dirpath, n), os.path.relpath(
          os.path.join(dirpath, n), workdir)) for n in sorted(filenames)
                     if n.endswith(".jsonl"))
      continue
    if dirpath != workdir and ({"results.json", generator.TOPM_FILE}
                               & set(filenames)):
      finished.append(dirpath + os.sep)
    if {"latest", "best"} & set(dirnames):        # a checkpointer's folder
      kept[dirpath] = _kept_steps(dirpath, any(dirpath.startswith(f)
                                               for f in finished))
      if _size(dirpath, kept[dirpath]) > max_ckpt_mb * 2**20:
        left_out.append(os.path.relpath(dirpath, workdir))
        kept[dirpath] = {"latest": [], "best": []}
        # A finished phase without its checkpoint is not finished.
        unfinish.extend(f for f in finished if dirpath.startswith(f))
    parent, kind = os.path.split(dirpath)
    keep_steps = kept.get(parent, {}).get(kind)
    dirnames[:] = sorted(
        d for d in dirnames if d not in _UNPACKED and _ORBAX_TMP not in d
        and (keep_steps is None or not d.isdigit()
             or int(d) in keep_steps))
    for name in sorted(filenames):
      if (name in _UNPACKED or _ORBAX_TMP in name or name.startswith(".")
          or name.endswith(_TEMP_ENDINGS)):
        continue                  # a file being written (atomic writes)
      path = os.path.join(dirpath, name)
      if os.path.isfile(path) and not os.path.islink(path):
        members.append((path, os.path.relpath(path, workdir)))
  done_marks = ("results.json", generator.TOPM_FILE)
  return [(p, n) for p, n in members
          if not (os.path.basename(p) in done_marks
                  and os.path.dirname(p) + os.sep in unfinish)]


def _newest(members: list) -> float:
  newest = 0.0
  for path, _ in members:
    try:
      newest = max(newest, os.path.getmtime(path))
    except OSError:
      pass                          # removed since (an old checkpoint)
  return newest


class _Changed(Exception):
  """A file of a pack changed or went while it was being packed."""


def _read_listing(listing: str) -> Optional[dict]:
  try:
    with open(listing) as f:
      d = json.load(f)
    return d if isinstance(d, dict) and isinstance(d.get("parts"),
                                                   list) else None
  except (OSError, ValueError):
    return None


def _unlink(path: str) -> None:
  """Removes `path` if it is there (another carry may remove it first)."""
  try:
    os.unlink(path)
  except FileNotFoundError:
    pass


def _remove_pack(listing: str) -> None:
  """Removes a pack: its listing first (the pack is gone), then its parts."""
  d = _read_listing(listing) or {"parts": []}
  _unlink(listing)
  for part in d["parts"]:
    _unlink(os.path.join(os.path.dirname(listing), part))


def _store_pack(listing: str, write, mtime: float) -> int:
  """Writes a pack (`write(f)` writes its .tar.gz bytes) as parts of at
  most PART_MB beside `listing`, then the listing with the modification
  time `mtime` (the pack is complete once it is written), then removes
  the previous pack's parts. Returns the pack's bytes."""
  folder = os.path.dirname(listing)
  base = os.path.basename(listing)[:-len(PACK_SUFFIX)]
  os.makedirs(folder, exist_ok=True)
  old = _read_listing(listing)
  gen = f"{time.time_ns():x}"
  parts, digest, total = [], hashlib.sha256(), 0
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w+b") as f:
      write(f)
      f.seek(0)
      while True:
        chunk = f.read(int(PART_MB * 2**20))
        if not chunk:
          break
        name = f"{base}.{gen}.{len(parts):03d}{_PART_SUFFIX}"
        _write(os.path.join(folder, name), lambda out, c=chunk: out.write(c))
        parts.append(name)
        digest.update(chunk)
        total += len(chunk)
  except BaseException:
    for name in parts:
      os.unlink(os.path.join(folder, name))
    raise
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
  text = json.dumps({"parts": parts, "bytes": total,
                     "sha256": digest.hexdigest()}, indent=1) + "\n"
  _write(listing, lambda out: out.write(text.encode()), mtime=mtime)
  for name in (old or {"parts": []})["parts"]:
    if name not in parts:
      _unlink(os.path.join(folder, name))
  return total


def _join_pack(listing: str, out_path: str) -> None:
  """Writes the pack of `listing` to `out_path`, checking it whole."""
  d = _read_listing(listing)
  if d is None:
    raise ValueError("its listing cannot be read")
  digest = hashlib.sha256()
  with open(out_path, "wb") as out:
    for name in d["parts"]:
      with open(os.path.join(os.path.dirname(listing), name), "rb") as f:
        data = f.read()
      digest.update(data)
      out.write(data)
  if digest.hexdigest() != d.get("sha256"):
    raise ValueError("its parts do not match its listing's checksum")


def _clean_tmp(dest: str, older_than_s: float = 3600) -> None:
  """Removes what a kill mid-pack left: temporary files, and parts that no
  listing names (an hour old or more, so not a pack being written)."""
  now = time.time()
  for dirpath, _, filenames in os.walk(dest):
    named = set()
    for name in filenames:
      if name.endswith(PACK_SUFFIX):
        named.update((_read_listing(os.path.join(dirpath, name)) or
                      {"parts": []})["parts"])
    for name in filenames:
      path = os.path.join(dirpath, name)
      stale = ((name.startswith(".") and name.endswith(".tmp"))
               or (name.endswith(_PART_SUFFIX) and name not in named))
      try:
        if stale and now - os.path.getmtime(path) > older_than_s:
          os.unlink(path)
      except FileNotFoundError:
        pass                      # renamed or removed by another carry


def carry(runs: str, dest: str, archive: Optional[str] = None,
          out=None) -> dict:
  """Packs each unfinished workdir under `runs` into `dest`.

  The pack of a run that has finished since is removed once `archive`
  (the folder `save` writes; None: no check) has the run; so is the pack
  of a workdir deleted from a grid folder that still exists. A pack whose
  files changed or went while it was written (a checkpoint pruned) is not
  kept: the previous pack stays, and the next call tries again.
  """
  out = out or sys.stdout
  runs = os.path.realpath(runs)
  counts = {"packed": 0, "unchanged": 0, "removed": 0, "MB": 0.0}
  if os.path.isdir(dest):
    _clean_tmp(dest)
  packed = set()
  for rel, path in _walk(runs):
    if os.path.islink(path) or not os.path.isfile(
        os.path.join(path, "config.json")):
      continue
    listing = os.path.join(dest, rel + PACK_SUFFIX)
    packed.add(os.path.normpath(listing))
    if is_finished(path) or os.path.exists(os.path.join(path, MARK_FILE)):
      kept = archive is None or is_finished(os.path.join(archive, rel))
      if os.path.isfile(listing) and kept:     # the archive has it now
        _remove_pack(listing)
        counts["removed"] += 1
      continue
    start = time.time()       # a file changed after this is packed again
    left_out = []
    members = _pack_members(path, left_out=left_out)
    for folder in left_out:
      print(f"archive.py: {rel}/{folder} left out of the pack (its saves "
            f"exceed {MAX_CKPT_MB} MB): that phase starts over", file=out)
    if (os.path.isfile(listing)
        and os.path.getmtime(listing) >= _newest(members)):
      counts["unchanged"] += 1
      continue

    def write(f, members=members):
      with tarfile.open(fileobj=f, mode="w:gz", compresslevel=1) as tar:
        for src, name in members:
          try:
            tar.add(src, arcname=name, recursive=False)
          except OSError as e:  # gone, or cut short while read
            raise _Changed(f"{name}: {e}") from e
    try:
      size = _store_pack(listing, write, mtime=start)
    except _Changed as e:
      print(f"archive.py: {rel} changed while it was packed ({e}); its "
            "previous pack is kept, the next call packs it again", file=out)
      continue
    counts["packed"] += 1
    counts["MB"] = round(counts["MB"] + size / 2**20, 1)
  # Packs of workdirs deleted from RUNS (a grid folder that is there
  # without them): they must not come back on the next machine.
  for dirpath, _, filenames in os.walk(dest):
    grid_dir = os.path.join(runs, os.path.relpath(dirpath, dest))
    for name in filenames:
      listing = os.path.normpath(os.path.join(dirpath, name))
      if (name.endswith(PACK_SUFFIX) and listing not in packed
          and os.path.isdir(grid_dir)):
        _remove_pack(listing)
        counts["removed"] += 1
  return counts


def _unpack(listing: str, dst: str) -> None:
  """Unpacks the pack of `listing` into the new workdir `dst`, at once."""
  tmp = dst + _PARTIAL
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  joined = tmp + ".tar.gz"
  try:
    _join_pack(listing, joined)
    with tarfile.open(joined, "r:gz") as tar:
      if hasattr(tarfile, "data_filter"):
        tar.extractall(tmp, filter="data")
      else:                           # Python < 3.11.4: names checked here
        for m in tar.getmembers():
          if os.path.isabs(m.name) or os.pardir in m.name.split("/"):
            raise ValueError(f"{m.name} is outside the workdir")
        tar.extractall(tmp)             # nosec: names checked above
  finally:
    if os.path.exists(joined):
      os.unlink(joined)
  os.replace(tmp, dst)


def restore_inflight(inflight: str, runs: str) -> set:
  """Unpacks the packs of `carry` where `runs` has no such workdir; returns
  the workdirs put back, relative to `runs`."""
  restored = set()
  if not os.path.isdir(inflight):
    return restored
  for dirpath, _, filenames in sorted(os.walk(inflight)):
    for name in sorted(filenames):
      if not name.endswith(PACK_SUFFIX):
        continue
      rel = os.path.normpath(os.path.relpath(
          os.path.join(dirpath, name[:-len(PACK_SUFFIX)]), inflight))
      dst = os.path.join(runs, rel)
      if os.path.lexists(dst):
        continue
      os.makedirs(os.path.dirname(dst), exist_ok=True)
      try:
        _unpack(os.path.join(dirpath, name), dst)
      except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        print(f"archive.py: {os.path.join(dirpath, name)} could not be "
              f"unpacked ({e}); that cell starts over")
        shutil.rmtree(dst + _PARTIAL, ignore_errors=True)
        continue
      restored.add(rel)
  return restored


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("command", choices=("save", "restore", "carry"))
  p.add_argument("src", help="save, carry: RUNS; restore: the archive")
  p.add_argument("dst", help="save: the archive; carry: the packs' folder; "
                 "restore: RUNS")
  p.add_argument("--inflight", help="restore: the packs' folder (carry's) "
                 "to unpack; save: also pack the unfinished runs there "
                 "(carry, with the archive as --archive)")
  p.add_argument("--archive", help="carry: the archive (save's folder); "
                 "a finished run's pack is removed once it is there")
  a = p.parse_args(argv)
  if a.command in ("save", "carry") and not os.path.isdir(a.src):
    print(f"archive.py: {a.src} is not a folder", file=sys.stderr)
    return 2
  if a.command == "save":
    counts = save(a.src, a.dst)
    if a.inflight:                      # one process for both: the loop's
      print(f"archive.py save {a.src} -> {a.dst}: " +
            ", ".join(f"{v} {k}" for k, v in counts.items()))
      archive = a.dst if a.archive is None else a.archive
      a.command, a.dst = "carry", a.inflight
      counts = carry(a.src, a.inflight, archive)
  elif a.command == "carry":
    counts = carry(a.src, a.dst, a.archive)
  else:
    counts = restore(a.src, a.dst, a.inflight)
  print(f"archive.py {a.command} {a.src} -> {a.dst}: " +
        ", ".join(f"{v} {k}" for k, v in counts.items()))
  return 0


if __name__ == "__main__":
  sys.exit(main())
