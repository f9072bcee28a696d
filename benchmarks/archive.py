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
every folder the root files in ROOT_FILES (a grid's log, the frozen choice
of the paper setting's augmentation). A workdir that is a link to another
run is kept as a `link_to` file naming its target, relative to RUNS.
Checkpoints, augmented copies and generator files stay behind: they are
large, and nothing that reads a finished cell needs them (a cell that would
have reused a sibling's copies or generator builds its own).

`restore` puts each archived run back where RUNS has no workdir of that
name (a workdir that exists, finished or being rerun, is left alone), with
an ARCHIVED file in it that says so; the grid runner then skips it as
finished, and the reports count it. A root file that RUNS lacks is copied;
grid logs are merged (archived records that RUNS's log lacks are added).
Both print what they did and neither deletes anything.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import sys
from typing import Iterator

RUN_FILES = ("results.json", "config.json", "metrics.jsonl",
             "data_fingerprint.json",
             os.path.join("generator", "generator_metrics.jsonl"))
ROOT_FILES = ("grid_log.jsonl", "augmentation_overrides.txt",
              "variants.tsv", "CHOICE.md")
LINK_FILE = "link_to"
MARK_FILE = "ARCHIVED"
# Folders under RUNS that hold no runs: pinned worktrees, the XLA cache.
_SKIP_PREFIXES = ("wt-", "jit_cache")


def is_finished(workdir: str) -> bool:
  """Whether `workdir` holds a finished run's results.json."""
  try:
    with open(os.path.join(workdir, "results.json")) as f:
      res = json.load(f)
  except (OSError, ValueError):
    return False
  return isinstance(res, dict) and "test" in res and "valid" in res


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
      if rel_dir == "." and d.startswith(_SKIP_PREFIXES):
        continue
      path = os.path.join(dirpath, d)
      yield os.path.normpath(os.path.join(rel_dir, d)), path
      if not os.path.islink(path):
        keep.append(d)
    dirnames[:] = keep


def _copy(src: str, dst: str) -> None:
  """Copies `src` to `dst` atomically, unless `dst` has its content."""
  if os.path.isfile(dst) and filecmp.cmp(src, dst, shallow=False):
    return
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  tmp = dst + ".tmp"
  shutil.copyfile(src, tmp)
  os.replace(tmp, dst)


def save(runs: str, dest: str) -> dict:
  """Copies the finished runs' small files from `runs` to `dest`."""
  runs = os.path.abspath(runs)
  counts = {"runs": 0, "links": 0, "root files": 0}
  for folder in [runs] + [p for _, p in _walk(runs)
                          if not os.path.islink(p)]:
    for name in ROOT_FILES:
      src = os.path.join(folder, name)
      if os.path.isfile(src):
        _copy(src, os.path.join(dest, os.path.relpath(src, runs)))
        counts["root files"] += 1
  for rel, path in _walk(runs):
    if not is_finished(path):
      continue
    out = os.path.join(dest, rel)
    if os.path.islink(path):
      target = os.path.relpath(os.path.realpath(path), runs)
      if target.startswith(os.pardir):
        continue            # a run outside RUNS: not ours to keep
      os.makedirs(out, exist_ok=True)
      with open(os.path.join(out, LINK_FILE), "w") as f:
        f.write(target + "\n")
      counts["links"] += 1
      continue
    for name in RUN_FILES:
      src = os.path.join(path, name)
      if os.path.isfile(src):
        _copy(src, os.path.join(out, name))
    counts["runs"] += 1
  return counts


def _merge_log(src: str, dst: str) -> int:
  """Appends the lines of `src` that `dst` lacks; returns how many."""
  with open(dst) as f:
    have = set(f.read().splitlines())
  with open(src) as f:
    new = [l for l in f.read().splitlines() if l.strip() and l not in have]
  if new:
    with open(dst, "a") as f:
      f.write("".join(l + "\n" for l in new))
  return len(new)


def restore(archive: str, runs: str) -> dict:
  """Puts the archived runs back into `runs` where it has no such workdir."""
  archive = os.path.abspath(archive)
  counts = {"runs": 0, "links": 0, "root files": 0, "log records": 0,
            "left alone": 0}
  for dirpath, _, filenames in os.walk(archive):
    rel = os.path.relpath(dirpath, archive)
    for name in filenames:
      if name not in ROOT_FILES or rel.startswith(os.pardir):
        continue
      dst = os.path.join(runs, rel, name)
      if not os.path.exists(dst):
        _copy(os.path.join(dirpath, name), dst)
        counts["root files"] += 1
      elif name == "grid_log.jsonl":
        counts["log records"] += _merge_log(os.path.join(dirpath, name), dst)
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
    if LINK_FILE in filenames:
      with open(os.path.join(dirpath, LINK_FILE)) as f:
        target = os.path.join(os.path.abspath(runs), f.read().strip())
      os.symlink(target, dst)
      counts["links"] += 1
      continue
    tmp = dst + ".restoring"
    shutil.rmtree(tmp, ignore_errors=True)
    for name in RUN_FILES:
      src = os.path.join(dirpath, name)
      if os.path.isfile(src):
        _copy(src, os.path.join(tmp, name))
    with open(os.path.join(tmp, MARK_FILE), "w") as f:
      f.write(f"restored from {archive}; checkpoints, copies and "
              "generator files were not archived\n")
    os.replace(tmp, dst)        # the run's files appear all at once
    counts["runs"] += 1
  return counts


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("command", choices=("save", "restore"))
  p.add_argument("src", help="save: RUNS; restore: the archive")
  p.add_argument("dst", help="save: the archive; restore: RUNS")
  a = p.parse_args(argv)
  if not os.path.isdir(a.src):
    print(f"archive.py: {a.src} is not a folder", file=sys.stderr)
    return 2
  counts = save(a.src, a.dst) if a.command == "save" else restore(a.src,
                                                                    a.dst)
  print(f"archive.py {a.command} {a.src} -> {a.dst}: " +
        ", ".join(f"{v} {k}" for k, v in counts.items()))
  return 0


if __name__ == "__main__":
  sys.exit(main())
