"""The reproduction grid: its cells, their order, their workdirs' state.

A cell is one training run, `<dataset>-<model>-<mode>-s<seed>` in its own
workdir under the grid's root; `cell_command` is what it runs (one
command line):

  python -m diff4rec_jax.main --config=configs/<ds>.py
      --workdir=<root>/<ds>-<model>-<mode>-s<seed> --config.mode=<mode>
      --config.model.name=<model> --config.seed=<seed> [--overrides ...]

A control cell (CONTROL_MODES: popular, uniform, duplicate) runs its
trainer mode instead of `<mode>`, with the control's fields after the
overrides.

Order (the issue's priorities; the filter flags only remove cells):
  1. SASRec x {base, aug, diff4rec} on Beauty and Yelp (and Steam if asked)
     x every seed, seed by seed (a full seed-0 comparison comes first);
  2. SASRec x 3 modes on the other datasets (ML-1M), first seed;
  3. GRU4Rec and Caser x {base, diff4rec} on Beauty, first seed;
  4. the rest at the first seed (GRU4Rec/Caser on Yelp and ML-1M, their
     'aug' cells);
  5. the remaining seeds of everything else.

State: a cell whose workdir holds `results.json` is done; one with any
other file is partial (it resumes from its checkpoints); else todo.
`<root>/grid_log.jsonl` holds a record of every attempt (benchmarks/
runner.py writes it). `expected_config` is the config a cell should have
run with, and `config_deviations` where its config.json differs.

Nothing here runs or writes anything.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import importlib
import json
import os
import shlex
import statistics
import sys
from typing import Any, NamedTuple, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from diff4rec_jax import config_lib  # pylint: disable=g-import-not-at-top
from diff4rec_jax import loop  # pylint: disable=g-import-not-at-top
from diff4rec_jax import rundir  # pylint: disable=g-import-not-at-top


# ----------------------------------------------------------------------------
# The grid
# ----------------------------------------------------------------------------
DATASET_CONFIGS = {
    "beauty": "configs/beauty.py",
    "yelp": "configs/yelp.py",
    "ml-1m": "configs/ml1m.py",
    "steam": "configs/steam.py",
    "ml-100k": "configs/tiny.py",     # smoke runs only; not in the paper
}
# Settings: 'strong' = the dataset configs' recipes (full-softmax CE, tuned on
# validation); 'paper' = the paper's setting, configs/paper.py:<dataset>
# (SASRec with BCE and one sampled negative, hidden 50).
SETTINGS = ("strong", "paper")
_PAPER_ARG = {"beauty": "beauty", "yelp": "yelp", "ml-1m": "ml1m",
              "steam": "steam"}


def config_arg(dataset: str, setting: str = "strong") -> str:
  """The `--config=` value of a cell of `dataset` in `setting`."""
  if setting == "paper":
    if dataset not in _PAPER_ARG:
      raise ValueError(f"dataset {dataset!r} has no paper setting")
    return f"configs/paper.py:{_PAPER_ARG[dataset]}"
  return DATASET_CONFIGS[dataset]


DATASET_TITLES = {"beauty": "Amazon Beauty", "yelp": "Yelp",
                  "ml-1m": "MovieLens-1M", "steam": "Steam",
                  "ml-100k": "MovieLens-100K (smoke dataset, not in the paper)"}
DEFAULT_DATASETS = ("beauty", "yelp", "ml-1m")
MODELS = ("sasrec", "gru4rec", "caser")
MODEL_TITLES = {"sasrec": "SASRec", "gru4rec": "GRU4Rec", "caser": "Caser"}
MODES = ("base", "aug", "diff4rec")
# Control cells: grid mode -> (trainer mode, the config fields that make
# the control, the grid mode it is a control for).
# - popular / uniform: Diff4Rec (curriculum and all) with the generator's
#   candidates replaced by the most popular / uniformly random unseen items:
#   what the diffusion itself contributes.
# - duplicate: the augmentation's training with copies that are their
#   originals (nothing replaced, no reorder): what extra passes over the
#   real sequences give, without any generated item or reorder.
# The fields come after --overrides on a cell's command line (the trainer
# takes the last value of a repeated flag), so a control stays itself when
# the grid's chosen augmentation sets the same fields; the rest of the
# overrides apply to it as to every cell.
CONTROL_MODES = {
    "popular": ("diff4rec", {"augment.candidates": "popular"}, "diff4rec"),
    "uniform": ("diff4rec", {"augment.candidates": "uniform"}, "diff4rec"),
    "duplicate": ("aug", {"augment.candidates": "uniform",
                          "augment.ratio": 0.0, "augment.min_replaced": 0,
                          "augment.reorder": False},
                  "aug"),
}
ALL_MODES = MODES + tuple(CONTROL_MODES)
MODE_TITLES = {"popular": "+Diff4Rec, popular candidates (control)",
               "uniform": "+Diff4Rec, uniform candidates (control)",
               "duplicate": "duplicated originals (control)",
               "base": "base", "aug": "+Diff4Rec w/o cur (aug)",
               "diff4rec": "+Diff4Rec"}
DEFAULT_SEEDS = (0, 1, 2)
# Datasets of the paper's Table 3/4 ablations: SASRec runs every seed there.
ABLATION_DATASETS = ("beauty", "yelp", "steam")
# Fields the grid sets itself; --overrides may not touch them.
GRID_FIELDS = ("mode", "model.name", "seed", "data.name")


def mode_overrides(mode: str) -> list:
  """The trainer mode of a grid mode: ['--config.mode=...']."""
  return [f"--config.mode={CONTROL_MODES.get(mode, (mode,))[0]}"]


def control_overrides(mode: str) -> list:
  """The fields that make a control cell: ['--config.augment.x=v', ...]
  (given after --overrides, so they win); [] for the other modes."""
  fields = CONTROL_MODES.get(mode, (None, {}, None))[1]
  return [f"--config.{k}={v}" for k, v in fields.items()]


# ----------------------------------------------------------------------------
# Cells, plan and status
# ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Cell:
  """One training run of the grid."""
  dataset: str
  model: str
  mode: str
  seed: int
  setting: str = "strong"

  @property
  def name(self) -> str:
    return f"{self.dataset}-{self.model}-{self.mode}-s{self.seed}"


def plan_cells(datasets: Sequence[str], models: Sequence[str],
               modes: Sequence[str], seeds: Sequence[int],
               setting: str = "strong") -> list:
  """The grid's cells in the order they are run (see the module docstring).

  Within a priority tier cells go seed by seed, then in the order of
  `datasets`, `models` (sasrec, gru4rec, caser) and modes (base, aug,
  diff4rec) as given.
  """
  first = seeds[0]

  def tier(c: Cell) -> int:
    if c.model == "sasrec" and c.dataset in ABLATION_DATASETS:
      return 0
    if c.seed != first:
      return 4
    if c.model == "sasrec":
      return 1
    if c.dataset == "beauty" and c.mode != "aug":
      return 2
    return 3

  cells = [Cell(d, m, mo, s, setting) for d in datasets for m in models
           for mo in modes for s in seeds]
  return sorted(cells, key=lambda c: (
      tier(c), list(seeds).index(c.seed), list(datasets).index(c.dataset),
      list(models).index(c.model), list(modes).index(c.mode)))


def cell_command(cell: Cell, root: str, overrides: Sequence[str],
                 prefix: Optional[Sequence[str]] = None) -> list:
  """The training command of a cell (run from the repository root)."""
  prefix = list(prefix or [sys.executable, "-m", "diff4rec_jax.main"])
  return prefix + [
      f"--config={config_arg(cell.dataset, cell.setting)}",
      f"--workdir={os.path.join(root, cell.name)}",
      *mode_overrides(cell.mode), f"--config.model.name={cell.model}",
      f"--config.seed={cell.seed}", *overrides,
      *control_overrides(cell.mode)]


@dataclasses.dataclass
class CellState:
  """What a cell's workdir holds now."""
  cell: Cell
  workdir: str
  status: str                      # done | partial | todo
  detail: str = ""
  results: Optional[dict] = None   # results.json of a finished cell
  config: Optional[dict] = None    # resolved config (results / config.json)
  curve: list = dataclasses.field(default_factory=list)  # [(epoch, NDCG@10)]
  last_attempt: Optional[dict] = None  # latest grid_log.jsonl record
  augmented_from: Optional[str] = None  # sibling whose copies it reused


def read_curve(path: str) -> list:
  """[(epoch, valid NDCG@10)] of the evaluations in a metrics.jsonl."""
  out = []
  if not os.path.exists(path):
    return out
  with open(path) as f:
    for line in f:
      try:
        rec = json.loads(line)
      except ValueError:
        continue      # a line cut by a crash mid-write
      if "valid/NDCG@10" in rec and not rec.get("final"):
        out.append((int(rec["epoch"]), float(rec["valid/NDCG@10"])))
  # A resumed run may have redone epochs: keep the last record of each.
  return sorted(dict(out).items())


def _grid_log_records(root: str):
  """The records of `root`/grid_log.jsonl, oldest first (bad lines skipped)."""
  path = os.path.join(root, "grid_log.jsonl")
  if not os.path.exists(path):
    return
  with open(path) as f:
    for line in f:
      try:
        yield json.loads(line)
      except ValueError:
        continue


def read_grid_log(root: str) -> dict:
  """The latest run record of each cell, by cell name.

  Records of shared augmented copies are under ('augmented_from', name).
  """
  out = {}
  for rec in _grid_log_records(root):
    if "generator_from" in rec:
      out[("generator_from", rec.get("cell"))] = rec
    elif "augmented_from" in rec:
      shared = out.setdefault(("augmented_from", rec.get("cell")), rec)
      shared.update(rec)
    else:
      out[rec.get("cell")] = rec
  return out


def cell_seconds(root: str) -> dict:
  """Wall seconds of all of each cell's attempts, summed, by cell name
  (from grid_log.jsonl)."""
  out = {}
  for rec in _grid_log_records(root):
    if "seconds" in rec and "cell" in rec and not (
        "generator_from" in rec or "augmented_from" in rec):
      out[rec["cell"]] = out.get(rec["cell"], 0.0) + float(rec["seconds"])
  return out


def finished_results(workdir: str) -> Optional[dict]:
  """A finished run's results.json (with test and valid metrics), or None."""
  res = rundir.read_json(os.path.join(workdir, "results.json"))
  ok = isinstance(res, dict) and "test" in res and "valid" in res
  return res if ok else None


class LeftEstimate(NamedTuple):
  """What `estimate_left` says is still to run."""
  seconds: float   # wall time of the cells measured or scaled
  measured: int    # cells estimated from finished cells of their kind
  scaled: int      # augmented cells estimated from their base cells
  unknown: int     # cells without an estimate


def estimate_left(states: Sequence["CellState"], root: str) -> LeftEstimate:
  """Wall time of the unfinished cells among `states`, from this machine.

  Finished cells are those under `root` (one setting; any cell, planned in
  `states` or not) with a results.json; a cell's time is the larger of its
  attempts' wall time in grid_log.jsonl and its results' train_seconds. A
  workdir linked from another root is left out (its time is that root's).
  An unfinished cell is "measured": the median of the finished cells of
  its dataset, backbone and kind (base,
  or augmented: aug, diff4rec and the controls). An augmented cell with no
  finished cell of its kind but finished base cells of its dataset and
  backbone is "scaled": their median times the median, over the root's
  (dataset, backbone) pairs that have both, of augmented / base median.
  What a partial cell has done is not subtracted.
  """
  logged = cell_seconds(root)
  runs = {}                       # (dataset, model, is_base) -> [seconds]
  for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    parts = name.rsplit("-", 3)       # dataset names may hold a '-'
    wd = os.path.join(root, name)
    res = (finished_results(wd) if len(parts) == 4 and parts[3][:1] == "s"
           and not os.path.islink(wd) else None)
    # An attempt killed without a word (a session's end) is missing from
    # the log; the trainer's own training time counts all attempts.
    secs = max(logged.get(name, 0.0), float((res or {}).get(
        "train_seconds") or 0.0))
    if res is not None and secs > 0:
      dataset, model, mode, _ = parts
      runs.setdefault((dataset, model, mode == "base"), []).append(secs)
  median = {k: statistics.median(v) for k, v in runs.items()}
  ratios = [median[(d, m, False)] / median[(d, m, True)]
            for (d, m, is_base) in median
            if is_base and (d, m, False) in median and median[(d, m, True)]]
  total, measured, scaled, unknown = 0.0, 0, 0, 0
  for st in states:
    if st.status == "done":
      continue
    d, m, is_base = st.cell.dataset, st.cell.model, st.cell.mode == "base"
    if (d, m, is_base) in median:
      total += median[(d, m, is_base)]
      measured += 1
    elif not is_base and (d, m, True) in median and ratios:
      # Its own pair has no augmented cell, so no ratio of its own.
      total += median[(d, m, True)] * statistics.median(ratios)
      scaled += 1
    else:
      unknown += 1
  return LeftEstimate(total, measured, scaled, unknown)


def cut_by_cap(results: dict) -> bool:
  """Whether a finished run was stopped by `train.num_epochs`, not by
  early stopping: it ran to the cap with fewer than `patience` evaluations
  (`loop.evaluates_at`) after its best epoch, so it might have improved
  with more epochs (loop.py stops after `patience` evaluations without a
  better score).
  """
  tc = (results.get("config") or {}).get("train") or {}
  cap, every, patience = (tc.get("num_epochs"), tc.get("eval_every"),
                          tc.get("patience"))
  best, ran = results.get("best_epoch"), results.get("epochs_run")
  if None in (cap, every, patience, best, ran) or every < 1:
    return False
  evals_after = sum(loop.evaluates_at(e, cap, every)
                    for e in range(best + 1, cap + 1))
  return ran >= cap and evals_after < patience


def inspect_cell(cell: Cell, root: str,
                 log: Optional[dict] = None) -> CellState:
  """Status of one cell from the files in its workdir (never modifies them)."""
  wd = os.path.join(root, cell.name)
  st = CellState(cell, wd, "todo")
  st.last_attempt = (log or {}).get(cell.name)
  st.augmented_from = (log or {}).get(("augmented_from", cell.name),
                                      {}).get("augmented_from")
  if not os.path.isdir(wd):
    return _note_failure(st)
  st.curve = read_curve(os.path.join(wd, "metrics.jsonl"))
  res = finished_results(wd)
  if res is not None:
    st.status, st.results, st.config = "done", res, res.get("config")
    st.detail = (f"best epoch {res.get('best_epoch')} of "
                 f"{res.get('epochs_run')}, train "
                 f"{fmt_secs(res.get('train_seconds', 0))}, test NDCG@10 "
                 f"{res['test'].get('NDCG@10', float('nan')):.4f}")
    if cut_by_cap(res):
      st.detail += ", cut by the epoch cap while still improving"
    if os.path.exists(os.path.join(wd, "ARCHIVED")):
      st.detail += " (restored from the archive: benchmarks/archive.py)"
    return st
  st.config = rundir.read_json(os.path.join(wd, "config.json"))
  if st.config is None and not os.listdir(wd):
    return _note_failure(st)
  st.status = "partial"
  if st.curve:
    best = max(st.curve, key=lambda r: r[1])
    st.detail = (f"training, evaluated up to epoch {st.curve[-1][0]} (best "
                 f"valid NDCG@10 {best[1]:.4f} at epoch {best[0]})")
  elif os.path.exists(os.path.join(wd, "metrics.jsonl")):
    st.detail = "training, before its first evaluation"
  elif os.path.exists(os.path.join(wd, "augmented.npz")):
    st.detail = "augmentation built, training not started"
  elif os.path.isdir(os.path.join(wd, "warmup")):
    st.detail = "warm-up recommender phase"
  elif os.path.isdir(os.path.join(wd, "generator")):
    st.detail = "generator phase"
  else:
    st.detail = "started"
  return _note_failure(st)


def _note_failure(st: CellState) -> CellState:
  """Adds the error of a failed last attempt (not a requested stop)."""
  att = st.last_attempt
  if att and att.get("rc") not in (0, None) and not att.get("stopped"):
    st.detail = "; ".join(filter(None, [
        st.detail, f"last attempt failed (rc {att['rc']}): "
        f"{att.get('error')}"]))
  return st


def inspect_grid(cells: Sequence[Cell], root: str) -> list:
  """inspect_cell of every cell. A cell whose workdir is a link to a run
  of another root (a finished measurement reused as a grid cell) takes its
  run record from that root's grid log, and its details name the link
  (its wall time stays out of `estimate_left`, which reads this root's
  log only)."""
  log = read_grid_log(root)
  states = [inspect_cell(c, root, log) for c in cells]
  for st in states:
    if os.path.islink(st.workdir):
      real = os.path.realpath(st.workdir)
      st.detail += f" (workdir linked to {real})"
      st.last_attempt = read_grid_log(os.path.dirname(real)).get(
          os.path.basename(real), st.last_attempt)
  return states


# ----------------------------------------------------------------------------
# Configs: what a cell should have been run with
# ----------------------------------------------------------------------------
def parse_overrides(text: str) -> list:
  """'--config.a.b=v ...' -> ['--config.a.b=v', ...], checked."""
  out = shlex.split(text or "")
  for tok in out:
    if not tok.startswith("--config.") or "=" not in tok:
      raise ValueError(f"--overrides: expected --config.field=value tokens, "
                       f"got {tok!r}")
    field = tok[len("--config."):].split("=", 1)[0]
    if field in GRID_FIELDS:
      raise ValueError(f"--overrides: config.{field} is set by the grid "
                       "(use --datasets/--models/--modes/--seeds)")
  return out


def flatten(d: dict, prefix: str = "") -> dict:
  """{'a': {'b': 1}} -> {'a.b': 1}: a nested config as dotted fields."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def parse_value(text: str, like: Any) -> Any:
  """A command-line value as the config field's type (as config_flags does)."""
  if isinstance(like, bool):
    if text.lower() in ("true", "1"):
      return True
    if text.lower() in ("false", "0"):
      return False
    raise ValueError(text)
  if isinstance(like, int):
    return int(text)
  if isinstance(like, float):
    return float(text)
  if isinstance(like, (tuple, list)):
    return list(ast.literal_eval(text))
  return text


def apply_overrides(config, overrides: Sequence[str]) -> None:
  """Sets each '--config.a.b=v' of `overrides` in the ConfigDict `config`,
  v read as the field's type (`parse_value`).

  Raises:
    ValueError: a field the config lacks, or a value of the wrong type,
      naming the token.
  """
  for tok in overrides:
    field, text = tok[len("--config."):].split("=", 1)
    *path, name = field.split(".")
    node = config
    try:
      for part in path:
        node = node[part]
      old = node[name]
    except (KeyError, TypeError):
      raise ValueError(f"{tok}: the config has no field {field!r}") from None
    try:
      value = parse_value(text, old)
    except (ValueError, SyntaxError):
      raise ValueError(f"{tok}: {text!r} does not read as config.{field}'s "
                       f"type ({type(old).__name__})") from None
    node[name] = tuple(value) if isinstance(old, tuple) else value


def load_config(dataset: str, setting: str = "strong"):
  """The ConfigDict of `config_arg(dataset, setting)`, as main.py loads it."""
  path, _, arg = config_arg(dataset, setting).partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  module = importlib.import_module(f"configs.{name}")
  return module.get_config(arg) if arg else module.get_config()


def expected_config(cell: Cell, overrides: Sequence[str] = ()) -> dict:
  """Flattened config the grid would run `cell` with (JSON-normalized).

  An override that cannot be interpreted here is left out (the trainer is
  the authority on it).
  """
  c = load_config(cell.dataset, cell.setting)
  flat = flatten(json.loads(json.dumps(c.to_dict())))
  flat.update({"mode": cell.mode, "model.name": cell.model,
               "seed": cell.seed})
  for tok in [*mode_overrides(cell.mode), *overrides,
              *control_overrides(cell.mode)]:
    field, text = tok[len("--config."):].split("=", 1)
    if field not in flat:
      continue
    try:
      flat[field] = json.loads(json.dumps(parse_value(text, flat[field])))
    except (ValueError, SyntaxError):
      flat.pop(field)
  return flat


def config_deviations(expected: dict, actual: Optional[dict]) -> list:
  """['field=actual', ...] where a run's config differs from `expected`.

  Fields a resumed run may change without changing what it computes
  (`config_lib.RESUMABLE_FIELDS`: paths, speed settings) do not count, nor
  do the generator and augmentation fields of a base run (unused there).
  """
  if actual is None:
    return []
  flat = flatten(actual)
  unused = config_lib.BASE_UNUSED if (
      expected.get("mode") == flat.get("mode") == "base") else ()
  out = []
  for k in sorted(set(expected) & set(flat)):
    if k in config_lib.RESUMABLE_FIELDS or k.startswith(unused):
      continue
    if flat[k] != expected[k]:
      out.append(f"{k}={json.dumps(flat[k])}")
  return out


# ----------------------------------------------------------------------------
# Formatting shared by the runner and the report
# ----------------------------------------------------------------------------
def fmt_secs(s: float) -> str:
  """'45s', '12.5 min' or '1.2 h'."""
  s = float(s or 0)
  if s < 60:
    return f"{s:.0f}s"
  if s < 3600:
    return f"{s / 60:.1f} min"
  return f"{s / 3600:.1f} h"


def now() -> str:
  """Local time to the second, ISO format: the grid log's and report's."""
  return datetime.datetime.now().isoformat(timespec="seconds")
