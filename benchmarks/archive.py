"""Keeps the experiment runs' results in the repository, and puts them back.

The background grids (benchmarks/experiments.sh) run in /work/runs, outside
the repository. That folder lives on one machine: on 2026-12-07 a session
started on a fresh machine, and every finished cell of sessions 12-20 was
gone (their figures survive only in the committed reports). This script
keeps what the reports, the grid's status and its time estimates read from
a run, small text files, under `results/runs/` in the same layout:

  python benchmarks/archive.py save /work/runs results/runs     # then commit
  python benchmarks/archive.py restore results/runs /work/runs

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
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import sys
import tempfile
from typing import Iterator, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from benchmarks import grid  # pylint: disable=g-import-not-at-top
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


def _write(dst: str, write) -> None:
  """Writes `dst` through a temporary file of its own, atomically."""
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst),
                             prefix="." + os.path.basename(dst), suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
    os.chmod(tmp, 0o644)           # mkstemp's 0600 is for secrets
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


def save(runs: str, dest: str, out=sys.stdout) -> dict:
  """Copies the finished runs' small files from `runs` to `dest`."""
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


def restore(archive: str, runs: str) -> dict:
  """Puts the archived runs back into `runs` where it has no such workdir."""
  archive = os.path.abspath(archive)
  counts = {"runs": 0, "links": 0, "root files": 0, "log records": 0,
            "left alone": 0}
  restored = set()              # relative workdirs put back by this call
  if not os.path.isdir(archive):
    print(f"archive.py: no archive at {archive}; nothing to restore")
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


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("command", choices=("save", "restore"))
  p.add_argument("src", help="save: RUNS; restore: the archive")
  p.add_argument("dst", help="save: the archive; restore: RUNS")
  a = p.parse_args(argv)
  if a.command == "save" and not os.path.isdir(a.src):
    print(f"archive.py: {a.src} is not a folder", file=sys.stderr)
    return 2
  counts = save(a.src, a.dst) if a.command == "save" else restore(a.src,
                                                                    a.dst)
  print(f"archive.py {a.command} {a.src} -> {a.dst}: " +
        ", ".join(f"{v} {k}" for k, v in counts.items()))
  return 0


if __name__ == "__main__":
  sys.exit(main())
