"""Reproduction grid: modes x backbones x datasets x seeds, and its report.

Runs every cell of the grid as its own training process, one at a time:

  python -m diff4rec_jax.main --config=configs/<ds>.py \
      --workdir=<root>/<ds>-<model>-<mode>-s<seed> --config.mode=<mode> \
      --config.model.name=<model> --config.seed=<seed> [--overrides ...]

(a control cell, modes popular / uniform / duplicate, runs its trainer mode
with the control's fields after the overrides: benchmarks/grid.py) and
writes a Markdown report of the finished cells beside the paper's
Tables 2-4 (`results/REPRODUCTION.md`) plus a plot of validation NDCG@10 per
epoch (`results/reproduction_ndcg.png`, needs matplotlib).

Resumable: a cell whose workdir holds `results.json` is finished and skipped;
any other cell reuses its workdir, so a cell that was cut off (time budget,
SIGTERM, crash) resumes from its checkpoints. Each finished attempt is
appended to `<root>/grid_log.jsonl` and the report is rewritten after every
cell. A cell's console output goes to `<root>/<cell>.log` (appended).

This file is the command line only; the grid lives in
  benchmarks/grid.py     cells, their run order, workdir state, configs
  benchmarks/runner.py   running cells, sharing generators and copies, lock
  benchmarks/stats.py    mean ± std over seeds, paired lifts, claim labels
  benchmarks/report.py   the Markdown report, curve tables and plot
  benchmarks/paper.py    the paper's Tables 2-4

Usage:
  # see the plan (done / partial / todo) without running anything
  python benchmarks/reproduce.py --dry_run
  # fill the grid for at most 10 hours, then write the report
  DIFF4REC_DATA_DIR=../shared/data python benchmarks/reproduce.py \
      --time_budget_min=600
  # only rewrite the report from whatever is finished
  python benchmarks/reproduce.py --report_only
  # a smoke grid on ML-100K (configs/tiny.py), outside results/
  DIFF4REC_DATA_DIR=../shared/data python benchmarks/reproduce.py \
      --datasets=ml-100k --models=sasrec --modes=base,diff4rec --seeds=0 \
      --root=/tmp/grid_smoke --report=/tmp/grid_smoke/REPORT.md \
      --overrides="--config.train.num_epochs=2 --config.generator.epochs=1"
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from benchmarks import grid  # pylint: disable=g-import-not-at-top
from benchmarks import report  # pylint: disable=g-import-not-at-top
from benchmarks import runner as runner_lib  # pylint: disable=g-import-not-at-top


def _csv(text: str, allowed: Sequence[str], flag: str) -> list:
  out = [t.strip() for t in text.split(",") if t.strip()]
  bad = [t for t in out if t not in allowed]
  if bad or not out:
    raise SystemExit(f"--{flag}: unknown {bad or 'empty'}; expected a "
                     f"comma-separated subset of {list(allowed)}")
  return out


def parse_args(argv: Optional[Sequence[str]] = None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  default_root = ("/work/runs/grid" if os.path.isdir("/work/runs")
                  else os.path.join(REPO, "runs", "grid"))
  p.add_argument("--root", default=default_root,
                 help="folder of the cells' workdirs")
  p.add_argument("--datasets", default=",".join(grid.DEFAULT_DATASETS),
                 help=f"comma-separated, from {list(grid.DATASET_CONFIGS)}")
  p.add_argument("--setting", default="strong", choices=grid.SETTINGS,
                 help="strong: configs/<dataset>.py; paper: "
                 "configs/paper.py:<dataset> (BCE, one negative, hidden 50)")
  p.add_argument("--models", default=",".join(grid.MODELS))
  p.add_argument("--modes", default=",".join(grid.MODES))
  p.add_argument("--seeds", default=",".join(map(str, grid.DEFAULT_SEEDS)))
  p.add_argument("--max_cells", type=int, default=None,
                 help="run (or resume) at most this many cells")
  p.add_argument("--time_budget_min", type=float, default=None,
                 help="start no new cell after this many minutes")
  p.add_argument("--hard_budget", action="store_true",
                 help="also stop the running cell at the budget (it saves a "
                 "checkpoint and resumes on the next invocation)")
  p.add_argument("--cell_timeout_min", type=float, default=None,
                 help="stop a cell (checkpoint, resume later) after this long")
  p.add_argument("--dry_run", action="store_true",
                 help="print the plan with each cell's status; run nothing")
  p.add_argument("--report_only", action="store_true",
                 help="write the report from the finished cells; run nothing")
  p.add_argument("--overrides", default="",
                 help="extra '--config.x=y ...' for every cell (a control "
                 "cell's own fields win over them)")
  p.add_argument("--data_dir", default=None,
                 help="passed to the cells as $DIFF4REC_DATA_DIR")
  p.add_argument("--jit_cache", default=None,
                 help="JAX's persistent compilation cache for the cells "
                 "(passed as $JAX_COMPILATION_CACHE_DIR; default: that "
                 "variable if set, else <root>/jit_cache; 'none': off)")
  p.add_argument("--report",
                 default=os.path.join(REPO, "results", "REPRODUCTION.md"))
  p.add_argument("--plot", default=None,
                 help="PNG path; default <report name, lower case>_ndcg.png "
                 "next to --report")
  p.add_argument("--no_share_augmentation", dest="share_augmentation",
                 action="store_false",
                 help="build the augmented copies in every aug/diff4rec "
                 "cell instead of reusing its sibling's (see "
                 "runner.share_augmentation)")
  p.add_argument("--machine", default=None,
                 help="machine description for the report (default: "
                 "/proc/cpuinfo + jax.devices())")
  args = p.parse_args(argv)
  args.datasets = _csv(args.datasets, list(grid.DATASET_CONFIGS),
                       "datasets")
  args.models = _csv(args.models, grid.MODELS, "models")
  args.modes = _csv(args.modes, grid.ALL_MODES, "modes")
  try:
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  except ValueError:
    raise SystemExit(f"--seeds: expected integers, got {args.seeds!r}")
  if not args.seeds:
    raise SystemExit("--seeds: empty")
  try:
    args.overrides = grid.parse_overrides(args.overrides)
  except ValueError as e:
    raise SystemExit(str(e))
  for mode in args.modes:
    fields = grid.CONTROL_MODES.get(mode, (None, {}, None))[1]
    hidden = [t for t in args.overrides
              if t[len("--config."):].split("=", 1)[0] in fields]
    if hidden:
      print(f"note: the {mode} control cells keep their own "
            f"{', '.join(sorted(fields))} over {' '.join(hidden)}",
            flush=True)
  args.root = os.path.abspath(args.root)
  args.report = os.path.abspath(args.report)
  # REPRODUCTION.md -> reproduction_ndcg.png, REPRODUCTION_paper.md ->
  # reproduction_paper_ndcg.png: one plot per report.
  stem = os.path.splitext(os.path.basename(args.report))[0].lower()
  args.plot = os.path.abspath(args.plot or os.path.join(
      os.path.dirname(args.report), f"{stem}_ndcg.png"))
  return args


def print_plan(cells: Sequence[grid.Cell], args) -> None:
  states = grid.inspect_grid(cells, args.root)
  print(f"root: {args.root}")
  print(f"overrides: {shlex.join(args.overrides) or '(none)'}")
  runnable = 0
  for i, st in enumerate(states):
    will = ""
    if st.status != "done":
      runnable += 1
      if args.max_cells is not None and runnable <= args.max_cells:
        will = "  <- runs"
      elif runnable == 1:
        will = "  <- next"
    devs = grid.config_deviations(
        grid.expected_config(st.cell, args.overrides), st.config)
    extra = f" [settings differ: {', '.join(devs)}]" if devs else ""
    print(f"{i + 1:3d}. {st.cell.name:32s} {st.status:8s} "
          f"{st.detail}{extra}{will}")
  counts = {k: sum(s.status == k for s in states)
            for k in ("done", "partial", "todo")}
  print(f"{len(states)} cells: {counts['done']} done, {counts['partial']} "
        f"partial, {counts['todo']} todo")
  left = grid.estimate_left(states, args.root)
  todo = left.measured + left.scaled + left.unknown
  if not todo:
    return
  if not left.measured + left.scaled:
    print(f"left: {todo} cells, no estimate (no finished cell of their "
          "dataset and backbone under this root)")
    return
  print(f"left: about {grid.fmt_secs(left.seconds)} of wall time for "
        f"{left.measured + left.scaled} of {todo} cells:")
  if left.measured:
    print(f"  {left.measured} as the median of this root's finished cells "
          "of their dataset, backbone and kind, as they ran here")
  if left.scaled:
    print(f"  {left.scaled} augmented as their dataset and backbone's base "
          "median times the median augmented / base ratio of the root's "
          "other pairs")
  if left.unknown:
    print(f"  {left.unknown} without an estimate (no finished cell of "
          "their kind)")


def cell_env(args, environ) -> dict:
  """The cells' environment: `environ` with --data_dir and the compilation
  cache. Cells of one shape compile the same steps (one per length bucket
  pair: minutes on a CPU in a cell's first epochs, again on every resume);
  with the cache each is compiled once for the grid (results/README.md,
  "Compilation cache for grid cells": a short Beauty aug run 263 s cold,
  175 s warm, same metrics bit for bit)."""
  env = dict(environ)
  if args.data_dir:
    env["DIFF4REC_DATA_DIR"] = os.path.abspath(args.data_dir)
  cache = args.jit_cache or env.get("JAX_COMPILATION_CACHE_DIR") or (
      os.path.join(os.path.abspath(args.root), "jit_cache"))
  if cache.lower() == "none":
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
  else:
    env["JAX_COMPILATION_CACHE_DIR"] = os.path.abspath(cache)
  return env


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  cells = grid.plan_cells(args.datasets, args.models, args.modes,
                          args.seeds, args.setting)
  env = cell_env(args, os.environ)
  prefix_env = (f"DIFF4REC_DATA_DIR={env['DIFF4REC_DATA_DIR']} "
                if env.get("DIFF4REC_DATA_DIR") else "")
  command = prefix_env + shlex.join(
      ["python", "benchmarks/reproduce.py"]
      + list(sys.argv[1:] if argv is None else argv))
  if args.dry_run:
    print_plan(cells, args)
    return 0
  if args.report_only:
    report.write_report(cells, args, command)
    return 0
  default_report = os.path.join(REPO, "results", "REPRODUCTION.md")
  if args.overrides and args.report == default_report:
    print(f"note: --overrides given and the report goes to {args.report}; "
          "its cells table lists every changed setting", flush=True)
  machine = args.machine or report.machine_description()
  records = runner_lib.run_grid(
      cells, args.root, args.overrides, env, max_cells=args.max_cells,
      time_budget_min=args.time_budget_min,
      cell_timeout_min=args.cell_timeout_min, hard_budget=args.hard_budget,
      share=args.share_augmentation, runner=command,
      after_cell=lambda: report.write_report(cells, args, command, machine))
  if not records:
    report.write_report(cells, args, command, machine)
  failed = [r for r in records if r["rc"] != 0 and not r.get("stopped")]
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
