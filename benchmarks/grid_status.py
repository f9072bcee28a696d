"""What the background experiment runs are doing: each running cell's phase
and progress, and every grid root's finished and partial cells.

  python benchmarks/grid_status.py [--runs=/work/runs]

Running cells are the `python -m diff4rec_jax.main --workdir=...` processes
of this machine; their progress comes from the log the grid runner keeps
beside each workdir (`<root>/<cell>.log`): the phase, the last epoch line
(its time and the ETA to the epoch cap; early stopping may end it sooner)
and the last validation NDCG@10. A grid root is any folder under --runs, up
to two levels down, with a `grid_log.jsonl`. Then the packs of unfinished
runs made for the next machine (--inflight, benchmarks/archive.py carry)
and how old each is. Reads only; runs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from typing import Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from benchmarks import archive  # pylint: disable=g-import-not-at-top
from benchmarks import grid  # pylint: disable=g-import-not-at-top

_ONE_OF = lambda names: "(" + "|".join(map(re.escape, names)) + ")"
# A cell workdir's name, grid.Cell.name: <dataset>-<model>-<mode>-s<seed>.
_CELL = re.compile(f"^{_ONE_OF(grid.DATASET_CONFIGS)}-{_ONE_OF(grid.MODELS)}"
                   f"-{_ONE_OF(grid.ALL_MODES)}-s(\\d+)$")
_EPOCH = re.compile(r"\] (?P<prefix>[\w-]+ )?epoch (?P<e>\d+)/(?P<n>\d+) "
                    r".* (?P<dt>[\d.]+)s  eta (?P<eta>\S+)$")
_VALID = re.compile(r"\] (?:[\w-]+ )?epoch (?P<e>\d+) valid .*"
                    r"NDCG@10 (?P<ndcg>[\d.]+)")
_PHASE = re.compile(r"\] phase: (?P<phase>.*)$")


def running_workdirs(ps_lines: Sequence[str]) -> list:
  """Workdirs of the trainer processes among `ps -eo args` lines."""
  out = []
  for line in ps_lines:
    if "diff4rec_jax.main" not in line:
      continue
    m = re.search(r"--workdir[= ](\S+)", line)
    if m:
      out.append(m.group(1))
  return out


def _tail(path: str, size: int = 200_000) -> list:
  with open(path, "rb") as f:
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - size))
    return f.read().decode(errors="replace").splitlines()


def progress(workdir: str) -> str:
  """'phase ...; epoch 21/200, 13.8 s, eta ...; valid NDCG@10 ...' of one
  running cell, from `<workdir>.log` (the grid runner's log)."""
  log = workdir.rstrip("/") + ".log"
  if not os.path.exists(log):
    return "no runner log (started outside the grid runner?)"
  phase = epoch = valid = None
  for line in _tail(log):
    if line.startswith("===="):          # a new attempt: forget the old one
      phase = epoch = valid = None
    elif m := _PHASE.search(line):
      phase, epoch, valid = m.group("phase"), None, None
    elif m := _EPOCH.search(line):
      epoch = m
    elif m := _VALID.search(line):
      valid = m
  parts = [f"phase {phase}" if phase else "starting"]
  if epoch:
    parts.append(f"{epoch.group('prefix') or ''}epoch {epoch.group('e')}/"
                 f"{epoch.group('n')} ({epoch.group('dt')} s, eta to the cap "
                 f"{epoch.group('eta')})")
  if valid:
    parts.append(f"valid NDCG@10 {valid.group('ndcg')} at epoch "
                 f"{valid.group('e')}")
  return "; ".join(parts)


def grid_roots(runs: str) -> list:
  """Folders under `runs` (depth <= 2) that hold a grid_log.jsonl."""
  out = []
  for dirpath, dirnames, files in os.walk(runs):
    depth = os.path.relpath(dirpath, runs).count(os.sep) + (dirpath != runs)
    if "grid_log.jsonl" in files:
      out.append(dirpath)
    if depth >= 2:
      dirnames[:] = []
    dirnames[:] = sorted(d for d in dirnames if not d.startswith("wt-"))
  return sorted(out)


def root_counts(root: str) -> tuple:
  """(finished, partial) cell workdirs of a grid root (grid.inspect_cell's
  status)."""
  status = [grid.inspect_cell(grid.Cell(*m.groups()[:3], int(m.group(4))),
                              root).status
            for m in map(_CELL.match, sorted(os.listdir(root))) if m]
  return status.count("done"), status.count("partial")


def packs(inflight: str, now: Optional[float] = None) -> list:
  """'<workdir>: as of <time> (<n> min ago), <MB> MB' of every pack of an
  unfinished run in `inflight` (benchmarks/archive.py carry), by workdir."""
  now = time.time() if now is None else now
  out = []
  for dirpath, _, files in sorted(os.walk(inflight)):
    for name in sorted(files):
      if not name.endswith(archive.PACK_SUFFIX):
        continue
      path = os.path.join(dirpath, name)
      rel = os.path.relpath(path, inflight)[:-len(archive.PACK_SUFFIX)]
      try:
        with open(path) as f:
          mb = json.load(f)["bytes"] / 2**20
      except (OSError, ValueError, KeyError, TypeError):
        out.append(f"{rel}: unreadable listing")
        continue
      made = os.path.getmtime(path)
      out.append(f"{rel}: as of {time.strftime('%H:%M', time.localtime(made))}"
                 f" ({(now - made) / 60:.0f} min ago), {mb:.0f} MB")
  return out


def status(runs: str, ps_lines: Sequence[str],
           inflight: Optional[str] = None) -> str:
  lines = ["running:"]
  cells = running_workdirs(ps_lines)
  for wd in cells:
    lines.append(f"  {os.path.relpath(wd, runs)}: {progress(wd)}")
  if not cells:
    lines.append("  nothing")
  lines.append("grid roots (finished / partial cells):")
  for root in grid_roots(runs):
    done, partial = root_counts(root)
    lines.append(f"  {os.path.relpath(root, runs)}: {done} / {partial}")
  if inflight and os.path.isdir(inflight):
    lines.append(f"packed for the next machine ({inflight}):")
    lines.extend("  " + l for l in packs(inflight) or ["nothing"])
  return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--runs", default="/work/runs")
  p.add_argument("--inflight", default=os.path.join(REPO, "results",
                                                    "inflight"),
                 help="the packs of unfinished runs (archive.py carry)")
  args = p.parse_args(argv)
  if not os.path.isdir(args.runs):
    raise SystemExit(f"--runs: {args.runs} is not a folder")
  ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True,
                      check=False).stdout.splitlines()
  print(status(args.runs, ps, args.inflight))
  return 0


if __name__ == "__main__":
  sys.exit(main())
