"""Runs the reproduction grid: each unfinished cell as its own process.

`run_grid` runs the cells of a plan (benchmarks/grid.py) one at a time, in
order, each as `python -m diff4rec_jax.main ...` (`grid.cell_command`) in its
own workdir under the root, with its console output appended to
`<root>/<cell>.log`:

* Resumable: a finished cell (its workdir holds `results.json`) is skipped;
  any other resumes from its checkpoints. Each attempt is appended to
  `<root>/grid_log.jsonl`.
* Budgets and signals: at a cell's deadline, the grid's hard budget or a
  SIGTERM/SIGINT to the runner, the running cell gets SIGTERM (the trainer
  saves a checkpoint and exits) and the runner stops.
* Sharing: a fresh 'aug'/'diff4rec' cell links its sibling's augmented
  copies (`share_augmentation`), or else any matching cell's generator
  top-M file (`share_generator`); train.py reuses either only if its stored
  hash matches the cell's config.
* One runner per root (`<root>/runner.pid`, which also names the running
  trainer).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from benchmarks import grid  # pylint: disable=g-import-not-at-top
from diff4rec_jax import errors as errors_lib  # pylint: disable=g-import-not-at-top
from diff4rec_jax import generator as generator_lib  # pylint: disable=g-import-not-at-top
from diff4rec_jax import pool as pool_lib  # pylint: disable=g-import-not-at-top
from diff4rec_jax import rundir  # pylint: disable=g-import-not-at-top


class _Signals:
  """SIGTERM/SIGINT to the runner: stop the running cell cleanly, then exit."""

  def __init__(self):
    self.requested = None
    self._old = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._old[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    del frame
    self.requested = signal.Signals(signum).name

  def restore(self):
    for sig, old in self._old.items():
      signal.signal(sig, old)


def _last_error(log_path: str, start: int) -> str:
  """The last meaningful line this attempt wrote to the cell's log."""
  try:
    with open(log_path, errors="replace") as f:
      f.seek(start)
      lines = [l.strip() for l in f.read().splitlines() if l.strip()]
  except OSError:
    return ""
  # A Python exception line first ('ValueError: ...'), then any error.
  for pattern in (r"^[\w.]*(Error|Exception)\b", r"[Ee]rror"):
    for l in reversed(lines):
      if re.search(pattern, l):
        return l[-300:]
  return lines[-1][-300:] if lines else ""


def run_cell(cell: grid.Cell, root: str, overrides: Sequence[str], env: dict,
             deadline: Optional[float], signals: Optional[_Signals],
             grace_s: float = 300.0, prefix: Optional[Sequence[str]] = None,
             poll_s: float = 2.0, runner: str = "",
             lock_path: str = "") -> dict:
  """Runs (or resumes) one cell to its end, its deadline or a signal.

  At the deadline (or on a signal to the runner) the cell gets SIGTERM: the
  trainer saves a checkpoint and exits, and the next invocation resumes it;
  after `grace_s` more seconds it is killed.

  Returns the record appended to grid_log.jsonl.
  """
  cmd = grid.cell_command(cell, root, overrides, prefix)
  log_path = os.path.join(root, cell.name + ".log")
  t0 = time.time()
  with open(log_path, "a") as log:
    log.write(f"\n==== {grid.now()} {shlex.join(cmd)}\n")
    log.flush()
    start = log.tell()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    if lock_path:   # a runner killed outright leaves the trainer running
      with open(lock_path, "w") as f:
        f.write(f"{os.getpid()} {proc.pid}\n")
    stopped, t_term = None, None
    while True:
      try:
        rc = proc.wait(timeout=poll_s)
        break
      except subprocess.TimeoutExpired:
        pass
      if t_term is None:
        if signals is not None and signals.requested:
          stopped = f"runner got {signals.requested}"
        elif deadline is not None and time.time() >= deadline:
          stopped = "time limit"
        if stopped:
          proc.send_signal(signal.SIGTERM)
          t_term = time.time()
      elif time.time() - t_term > grace_s:
        proc.kill()
  if rc in (errors_lib.PREEMPTED_EXIT, 128 + signal.SIGINT) and not stopped:
    # The trainer saved and stopped on a signal from elsewhere (a scheduler's
    # preemption): resumable, not a failure.
    stopped = f"trainer stopped by a signal (rc {rc})"
  done = os.path.exists(os.path.join(root, cell.name, "results.json"))
  rec = {"cell": cell.name, "rc": rc, "finished": done and rc == 0,
         "seconds": round(time.time() - t0, 1), "time": grid.now(),
         "command": shlex.join(cmd),
         "runner": runner or shlex.join([sys.executable] + sys.argv)}
  if stopped:
    rec["stopped"] = stopped
  if rc != 0:
    rec["error"] = _last_error(log_path, start)
  with open(os.path.join(root, "grid_log.jsonl"), "a") as f:
    f.write(json.dumps(rec) + "\n")
  return rec


def _link_or_copy(src: str, dst: str) -> None:
  """Puts `src` at `dst` (a hard link, a copy where links fail), atomically."""
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  tmp = dst + ".link"
  try:
    os.link(src, tmp)
  except OSError:
    shutil.copyfile(src, tmp)
  os.replace(tmp, dst)


def share_augmentation(cell: grid.Cell, root: str,
                       overrides: Sequence[str]) -> Optional[str]:
  """Gives a fresh aug/diff4rec cell its sibling's augmented copies.

  The 'aug' and 'diff4rec' cells of one dataset, backbone and seed build the
  same generator, warm-up and copies (train.py's augmentation hash leaves the
  mode out); linking `augmented.npz` saves the second cell those phases and
  makes the two differ only in the curriculum. train.py reuses the file only
  if its hash matches the cell's config, else it rebuilds it. Only a cell
  without a config.json receives it, only from a sibling whose config equals
  the cell's apart from the mode. Returns the sibling's name, or None.
  """
  if cell.mode not in ("aug", "diff4rec"):
    return None
  wd = os.path.join(root, cell.name)
  if (os.path.exists(os.path.join(wd, "config.json")) or
      os.path.exists(os.path.join(wd, pool_lib.AUGMENTED_FILE))):
    return None
  other = dataclasses.replace(
      cell, mode="diff4rec" if cell.mode == "aug" else "aug")
  src = os.path.join(root, other.name, pool_lib.AUGMENTED_FILE)
  cfg = rundir.read_json(os.path.join(root, other.name, "config.json"))
  if not os.path.exists(src) or cfg is None:
    return None
  want = grid.expected_config(cell, overrides)
  want["mode"] = other.mode
  if grid.config_deviations(want, cfg):
    return None
  _link_or_copy(src, os.path.join(wd, pool_lib.AUGMENTED_FILE))
  return other.name


# train.py keeps the generator phase's files in <workdir>/generator.
GENERATOR_TOPM = os.path.join("generator", generator_lib.TOPM_FILE)


def _generator_key(flat: dict) -> str:
  """What a cell's generator depends on: data, generator block, its seed."""
  g = {k: v for k, v in flat.items()
       if k.startswith("generator.") and k != "generator.seed"}
  seed = flat.get("generator.seed", -1)
  seed = flat.get("seed") if seed is None or seed < 0 else seed
  data = {k: flat.get(k) for k in ("data.name", "data.path")}
  return json.dumps([g, seed, data], sort_keys=True)


def share_generator(cell: grid.Cell, root: str,
                    overrides: Sequence[str]) -> Optional[str]:
  """Gives a fresh generator cell the top-M file of any cell under `root`
  that trained the same generator (same data, generator settings and
  generator seed: with `--config.generator.seed=0` every seed of a dataset
  shares one). Links `generator/generator_topm.npz`; train.py uses it only
  if its stored hash matches the cell's config (else it retrains). Returns
  the source cell's name, or None."""
  want = grid.expected_config(cell, overrides)
  if want.get("mode") == "base" or want.get("augment.candidates",
                                            "generator") != "generator":
    return None
  wd = os.path.join(root, cell.name)
  dst = os.path.join(wd, GENERATOR_TOPM)
  if os.path.exists(dst) or os.path.exists(os.path.join(wd, "config.json")):
    return None
  key = _generator_key(want)
  for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    src = os.path.join(root, name, GENERATOR_TOPM)
    cfg = rundir.read_json(os.path.join(root, name, "config.json"))
    if name == cell.name or cfg is None or not os.path.exists(src):
      continue
    if _generator_key(grid.flatten(cfg)) != key:
      continue
    _link_or_copy(src, dst)
    return name
  return None


def _take_lock(root: str) -> str:
  """One runner per grid root: a second would train the same workdir twice."""
  path = os.path.join(root, "runner.pid")
  if os.path.exists(path):
    try:
      with open(path) as f:
        pids = [int(t) for t in f.read().split()]
    except (OSError, ValueError):
      pids = []
    alive = [p for p in pids if p != os.getpid() and rundir.pid_alive(p)]
    if alive:
      raise SystemExit(f"{path}: process(es) {alive} (runner, trainer) of "
                       "another invocation still run on this root; wait for "
                       "them or stop them first")
  with open(path, "w") as f:
    f.write(f"{os.getpid()}\n")
  return path


def run_grid(cells: Sequence[grid.Cell], root: str, overrides: Sequence[str],
             env: dict, max_cells: Optional[int] = None,
             time_budget_min: Optional[float] = None,
             cell_timeout_min: Optional[float] = None,
             hard_budget: bool = False, prefix: Optional[Sequence[str]] = None,
             after_cell=None, max_consecutive_failures: int = 3,
             grace_s: float = 300.0, share: bool = True,
             runner: str = "") -> list:
  """Runs the unfinished cells in order; returns this invocation's records."""
  os.makedirs(root, exist_ok=True)
  lock = _take_lock(root)
  signals = _Signals()
  t0 = time.time()
  budget_end = (t0 + 60 * time_budget_min) if time_budget_min else None
  records, failures = [], 0
  try:
    todo = [s for s in grid.inspect_grid(cells, root) if s.status != "done"]
    print(f"grid: {len(cells)} cells, {len(cells) - len(todo)} done, "
          f"{len(todo)} to run or resume", flush=True)
    for i, st in enumerate(todo):
      if max_cells is not None and len(records) >= max_cells:
        print(f"stopping: --max_cells={max_cells} reached", flush=True)
        break
      if budget_end is not None and time.time() >= budget_end:
        print(f"stopping: time budget of {time_budget_min:g} min spent; "
              "rerun the same command to go on", flush=True)
        break
      if signals.requested:
        break
      deadline = None
      if cell_timeout_min:
        deadline = time.time() + 60 * cell_timeout_min
      if hard_budget and budget_end is not None:
        deadline = min(deadline or budget_end, budget_end)
      print(f"[{i + 1}/{len(todo)}] {st.cell.name}: "
            f"{'resuming, ' + st.detail if st.status == 'partial' else 'start'}"
            f" ({grid.now()})", flush=True)
      if share:
        what, field = "augmented copies", "augmented_from"
        src = share_augmentation(st.cell, root, overrides)
        if not src:
          what, field = "generator top-M", "generator_from"
          src = share_generator(st.cell, root, overrides)
        if src:
          print(f"    reusing the {what} of {src}", flush=True)
          with open(os.path.join(root, "grid_log.jsonl"), "a") as f:
            f.write(json.dumps({"cell": st.cell.name, field: src,
                                "time": grid.now()}) + "\n")
      rec = run_cell(st.cell, root, overrides, env, deadline, signals,
                     grace_s=grace_s, prefix=prefix, runner=runner,
                     lock_path=lock)
      records.append(rec)
      after = grid.inspect_cell(st.cell, root)
      if rec["finished"]:
        failures = 0
        print(f"    finished in {grid.fmt_secs(rec['seconds'])}: "
              f"{after.detail}", flush=True)
      elif rec["rc"] == 0 or rec.get("stopped"):
        print(f"    stopped ({rec.get('stopped', 'no results.json')}) after "
              f"{grid.fmt_secs(rec['seconds'])}; {after.detail}; resumes on "
              "the next invocation", flush=True)
      else:
        failures += 1
        print(f"    FAILED (rc {rec['rc']}) after "
              f"{grid.fmt_secs(rec['seconds'])}: {rec.get('error')}\n    log: "
              f"{os.path.join(root, st.cell.name + '.log')}", flush=True)
      if after_cell is not None:
        after_cell()
      if failures >= max_consecutive_failures:
        print(f"stopping: {failures} cells failed in a row", flush=True)
        break
    if signals.requested:
      print(f"stopping: runner got {signals.requested}", flush=True)
  finally:
    signals.restore()
    try:
      os.remove(lock)
    except OSError:
      pass
  return records
