"""Reproduction grid: modes x backbones x datasets x seeds, and its report.

Runs every cell of the grid as its own training process, one at a time:

  python -m diff4rec_jax.main --config=configs/<ds>.py \
      --workdir=<root>/<ds>-<model>-<mode>-s<seed> --config.mode=<mode> \
      --config.model.name=<model> --config.seed=<seed> [--overrides ...]

and writes a Markdown report of the finished cells beside the paper's
Tables 2-4 (`results/REPRODUCTION.md`) plus a plot of validation NDCG@10 per
epoch (`results/reproduction_ndcg.png`, needs matplotlib).

Resumable: a cell whose workdir holds `results.json` is finished and skipped;
any other cell reuses its workdir, so a cell that was cut off (time budget,
SIGTERM, crash) resumes from its checkpoints. Each finished attempt is
appended to `<root>/grid_log.jsonl` and the report is rewritten after every
cell. A cell's console output goes to `<root>/<cell>.log` (appended).

Order (the issue's priorities; the filter flags only remove cells):
  1. SASRec x {base, aug, diff4rec} on Beauty and Yelp (and Steam if asked)
     x every seed, seed by seed (a full seed-0 comparison comes first);
  2. SASRec x 3 modes on the other datasets (ML-1M), first seed;
  3. GRU4Rec and Caser x {base, diff4rec} on Beauty, first seed;
  4. the rest at the first seed (GRU4Rec/Caser on Yelp and ML-1M, their
     'aug' cells);
  5. the remaining seeds of everything else.

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
import ast
import dataclasses
import datetime
import importlib
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from typing import Any, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from benchmarks import machine as machine_info  # pylint: disable=g-import-not-at-top
from diff4rec_jax import errors as errors_lib  # pylint: disable=g-import-not-at-top

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
# Control cells: Diff4Rec (curriculum and all) with the generator's
# candidates replaced by the most popular / uniformly random unseen items
# (config.augment.candidates): what the diffusion itself contributes.
CONTROL_MODES = {"popular": "popular", "uniform": "uniform"}
ALL_MODES = MODES + tuple(CONTROL_MODES)
MODE_TITLES = {"popular": "+Diff4Rec, popular candidates (control)",
               "uniform": "+Diff4Rec, uniform candidates (control)",
               "base": "base", "aug": "+Diff4Rec w/o cur (aug)",
               "diff4rec": "+Diff4Rec"}
DEFAULT_SEEDS = (0, 1, 2)
# Datasets of the paper's Table 3/4 ablations: SASRec runs every seed there.
ABLATION_DATASETS = ("beauty", "yelp", "steam")
# Fields the grid sets itself; --overrides may not touch them.
GRID_FIELDS = ("mode", "model.name", "seed", "data.name")
# Fields that may differ between a run and its config without changing it.
# = config_lib.RESUMABLE_FIELDS (not imported: this runner stays free of JAX)
IGNORED_FIELDS = ("data.dir", "data.path", "train.log_every_steps",
                  "model.attn_blocks", "train.micro_batch",
                  "model.dropout_rng", "cpu_devices")

MAIN_METRICS = ("HR@10", "NDCG@10")
MORE_METRICS = ("HR@5", "HR@20", "NDCG@5", "NDCG@20", "MRR")
LIFT_METRICS = (("test", "HR@10"), ("test", "NDCG@10"),
                ("valid", "NDCG@10"))
COMPARISONS = (("diff4rec", "base"), ("aug", "base"), ("diff4rec", "aug"),
               ("diff4rec", "popular"), ("diff4rec", "uniform"),
               ("popular", "base"), ("uniform", "base"))


def mode_overrides(mode: str) -> list:
  """The config fields a grid mode sets: ['--config.mode=...', ...]."""
  if mode in CONTROL_MODES:
    return ["--config.mode=diff4rec",
            f"--config.augment.candidates={CONTROL_MODES[mode]}"]
  return [f"--config.mode={mode}"]

# ----------------------------------------------------------------------------
# The paper's numbers (full ranking, leave-one-out)
# ----------------------------------------------------------------------------
_T2_COLS = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "MRR")
# Table 2: the three backbones alone and Diff4Rec (on SASRec, as Table 3/4
# show: their SASRec+Diff4Rec cells equal Table 2's Diff4Rec column).
_TABLE2 = {
    ("ml-1m", "gru4rec"): (0.0792, 0.1573, 0.2374, 0.0458, 0.0667, 0.0479),
    ("ml-1m", "caser"): (0.0813, 0.1556, 0.2528, 0.0512, 0.0740, 0.0673),
    ("ml-1m", "sasrec"): (0.1047, 0.1775, 0.2807, 0.0598, 0.0824, 0.0819),
    ("ml-1m", "diff4rec"): (0.1401, 0.2238, 0.3830, 0.0812, 0.1222, 0.1202),
    ("beauty", "gru4rec"): (0.0152, 0.0268, 0.0413, 0.0094, 0.0137, 0.0133),
    ("beauty", "caser"): (0.0158, 0.0263, 0.0427, 0.0109, 0.0149, 0.0113),
    ("beauty", "sasrec"): (0.0325, 0.0633, 0.0971, 0.0204, 0.0303, 0.0285),
    ("beauty", "diff4rec"): (0.0456, 0.0871, 0.1347, 0.0301, 0.0426, 0.0368),
    ("steam", "gru4rec"): (0.0340, 0.0561, 0.0905, 0.0126, 0.0268, 0.0213),
    ("steam", "caser"): (0.0396, 0.0680, 0.1011, 0.0227, 0.0315, 0.0296),
    ("steam", "sasrec"): (0.0464, 0.0880, 0.1316, 0.0224, 0.0402, 0.0350),
    ("steam", "diff4rec"): (0.0575, 0.1132, 0.1608, 0.0321, 0.0541, 0.0479),
    ("yelp", "gru4rec"): (0.0142, 0.0252, 0.0453, 0.0087, 0.0124, 0.0101),
    ("yelp", "caser"): (0.0139, 0.0247, 0.0451, 0.0083, 0.0122, 0.0103),
    ("yelp", "sasrec"): (0.0153, 0.0286, 0.0481, 0.0089, 0.0134, 0.0119),
    ("yelp", "diff4rec"): (0.0198, 0.0411, 0.0595, 0.0125, 0.0171, 0.0157),
}
# Table 3: +Diff4Rec on GRU4Rec and Caser (HR@10, NDCG@10).
_TABLE3 = {
    ("beauty", "gru4rec"): (0.0372, 0.0190),
    ("beauty", "caser"): (0.0375, 0.0214),
    ("steam", "gru4rec"): (0.0691, 0.0342),
    ("steam", "caser"): (0.0838, 0.0443),
    ("yelp", "gru4rec"): (0.0336, 0.0161),
    ("yelp", "caser"): (0.0351, 0.0161),
}
# Table 4: SASRec + Diff4Rec w/o curriculum = our mode 'aug' (HR@10, NDCG@10).
_TABLE4 = {"beauty": (0.0850, 0.0417), "steam": (0.1108, 0.0524),
           "yelp": (0.0410, 0.0165)}


def _paper_table() -> dict:
  out = {}
  for (ds, name), vals in _TABLE2.items():
    if name == "diff4rec":
      src = "Table 2/3" if ds != "ml-1m" else "Table 2"
      out[(ds, "sasrec", "diff4rec")] = (src, dict(zip(_T2_COLS, vals)))
    else:
      src = "Table 2/3" if ds != "ml-1m" else "Table 2"
      out[(ds, name, "base")] = (src, dict(zip(_T2_COLS, vals)))
  for (ds, model), vals in _TABLE3.items():
    out[(ds, model, "diff4rec")] = ("Table 3", dict(zip(MAIN_METRICS, vals)))
  for ds, vals in _TABLE4.items():
    out[(ds, "sasrec", "aug")] = ("Table 4", dict(zip(MAIN_METRICS, vals)))
  return out


# (dataset, model, mode) -> (source, {metric: value}).
PAPER = _paper_table()


def paper_value(dataset: str, model: str, mode: str,
                metric: str) -> Optional[float]:
  return PAPER.get((dataset, model, mode), (None, {}))[1].get(metric)


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

  cells = [Cell(d, m, mo, s, setting) for d in datasets for m in models for mo in modes
           for s in seeds]
  return sorted(cells, key=lambda c: (
      tier(c), list(seeds).index(c.seed), list(datasets).index(c.dataset),
      list(models).index(c.model), list(modes).index(c.mode)))


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


def _read_json(path: str) -> Optional[Any]:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


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


def read_grid_log(root: str) -> dict:
  """The latest run record of each cell, by cell name.

  Records of shared augmented copies are under ('augmented_from', name).
  """
  out = {}
  path = os.path.join(root, "grid_log.jsonl")
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          rec = json.loads(line)
        except ValueError:
          continue
        if "generator_from" in rec:
          out[("generator_from", rec.get("cell"))] = rec
        elif "augmented_from" in rec:
          shared = out.setdefault(("augmented_from", rec.get("cell")), rec)
          shared.update(rec)
        else:
          out[rec.get("cell")] = rec
  return out


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
  res = _read_json(os.path.join(wd, "results.json"))
  if isinstance(res, dict) and "test" in res and "valid" in res:
    st.status, st.results, st.config = "done", res, res.get("config")
    st.detail = (f"best epoch {res.get('best_epoch')} of "
                 f"{res.get('epochs_run')}, train "
                 f"{_fmt_secs(res.get('train_seconds', 0))}, test NDCG@10 "
                 f"{res['test'].get('NDCG@10', float('nan')):.4f}")
    return st
  st.config = _read_json(os.path.join(wd, "config.json"))
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
  log = read_grid_log(root)
  return [inspect_cell(c, root, log) for c in cells]


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


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _parse_value(text: str, like: Any) -> Any:
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


def expected_config(cell: Cell, overrides: Sequence[str] = ()) -> dict:
  """Flattened config the grid would run `cell` with (JSON-normalized).

  An override that cannot be interpreted here is left out (the trainer is
  the authority on it).
  """
  path, _, arg = config_arg(cell.dataset, cell.setting).partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  module = importlib.import_module(f"configs.{name}")
  c = module.get_config(arg) if arg else module.get_config()
  flat = _flatten(json.loads(json.dumps(c.to_dict())))
  flat.update({"mode": cell.mode, "model.name": cell.model,
               "seed": cell.seed})
  if cell.mode in CONTROL_MODES:
    flat.update({"mode": "diff4rec",
                 "augment.candidates": CONTROL_MODES[cell.mode]})
  for tok in overrides:
    field, text = tok[len("--config."):].split("=", 1)
    if field not in flat:
      continue
    try:
      flat[field] = json.loads(json.dumps(_parse_value(text, flat[field])))
    except (ValueError, SyntaxError):
      flat.pop(field)
  return flat


def config_deviations(expected: dict, actual: Optional[dict]) -> list:
  """['field=actual', ...] where a run's config differs from `expected`."""
  if actual is None:
    return []
  flat = _flatten(actual)
  out = []
  for k in sorted(set(expected) & set(flat)):
    if k in IGNORED_FIELDS:
      continue
    if flat[k] != expected[k]:
      out.append(f"{k}={json.dumps(flat[k])}")
  return out


# ----------------------------------------------------------------------------
# Running cells
# ----------------------------------------------------------------------------
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


def cell_command(cell: Cell, root: str, overrides: Sequence[str],
                 prefix: Optional[Sequence[str]] = None) -> list:
  """The training command of a cell (run from the repository root)."""
  prefix = list(prefix or [sys.executable, "-m", "diff4rec_jax.main"])
  return prefix + [
      f"--config={config_arg(cell.dataset, cell.setting)}",
      f"--workdir={os.path.join(root, cell.name)}",
      *mode_overrides(cell.mode), f"--config.model.name={cell.model}",
      f"--config.seed={cell.seed}", *overrides]


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


def run_cell(cell: Cell, root: str, overrides: Sequence[str], env: dict,
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
  cmd = cell_command(cell, root, overrides, prefix)
  log_path = os.path.join(root, cell.name + ".log")
  t0 = time.time()
  with open(log_path, "a") as log:
    log.write(f"\n==== {_now()} {shlex.join(cmd)}\n")
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
         "seconds": round(time.time() - t0, 1), "time": _now(),
         "command": shlex.join(cmd),
         "runner": runner or shlex.join([sys.executable] + sys.argv)}
  if stopped:
    rec["stopped"] = stopped
  if rc != 0:
    rec["error"] = _last_error(log_path, start)
  with open(os.path.join(root, "grid_log.jsonl"), "a") as f:
    f.write(json.dumps(rec) + "\n")
  return rec


# = diff4rec_jax.pool.AUGMENTED_FILE (not imported: no jax here)
AUGMENTED_FILE = "augmented.npz"


def share_augmentation(cell: Cell, root: str,
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
      os.path.exists(os.path.join(wd, AUGMENTED_FILE))):
    return None
  other = dataclasses.replace(
      cell, mode="diff4rec" if cell.mode == "aug" else "aug")
  src = os.path.join(root, other.name, AUGMENTED_FILE)
  cfg = _read_json(os.path.join(root, other.name, "config.json"))
  if not os.path.exists(src) or cfg is None:
    return None
  want = expected_config(cell, overrides)
  want["mode"] = other.mode
  if config_deviations(want, cfg):
    return None
  os.makedirs(wd, exist_ok=True)
  tmp = os.path.join(wd, AUGMENTED_FILE + ".link")
  try:
    os.link(src, tmp)
  except OSError:
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.copyfile(src, tmp)
  os.replace(tmp, os.path.join(wd, AUGMENTED_FILE))
  return other.name


GENERATOR_TOPM = os.path.join("generator", "generator_topm.npz")


def _generator_key(flat: dict) -> Optional[tuple]:
  """What a cell's generator depends on: data, generator block, its seed."""
  g = {k: v for k, v in flat.items()
       if k.startswith("generator.") and k != "generator.seed"}
  seed = flat.get("generator.seed", -1)
  seed = flat.get("seed") if seed is None or seed < 0 else seed
  data = {k: flat.get(k) for k in ("data.name", "data.path")}
  return json.dumps([g, seed, data], sort_keys=True)


def share_generator(cell: Cell, root: str,
                    overrides: Sequence[str]) -> Optional[str]:
  """Gives a fresh generator cell the top-M file of any cell under `root`
  that trained the same generator (same data, generator settings and
  generator seed: with `--config.generator.seed=0` every seed of a dataset
  shares one). Links `generator/generator_topm.npz`; train.py uses it only
  if its stored hash matches the cell's config (else it retrains). Returns
  the source cell's name, or None."""
  want = expected_config(cell, overrides)
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
    cfg = _read_json(os.path.join(root, name, "config.json"))
    if name == cell.name or cfg is None or not os.path.exists(src):
      continue
    if _generator_key(_flatten(cfg)) != key:
      continue
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
      os.link(src, dst + ".link")
    except OSError:
      import shutil  # pylint: disable=g-import-not-at-top
      shutil.copyfile(src, dst + ".link")
    os.replace(dst + ".link", dst)
    return name
  return None


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _take_lock(root: str) -> str:
  """One runner per grid root: a second would train the same workdir twice."""
  path = os.path.join(root, "runner.pid")
  if os.path.exists(path):
    try:
      with open(path) as f:
        pids = [int(t) for t in f.read().split()]
    except (OSError, ValueError):
      pids = []
    alive = [p for p in pids if p != os.getpid() and _pid_alive(p)]
    if alive:
      raise SystemExit(f"{path}: process(es) {alive} (runner, trainer) of "
                       "another invocation still run on this root; wait for "
                       "them or stop them first")
  with open(path, "w") as f:
    f.write(f"{os.getpid()}\n")
  return path


def run_grid(cells: Sequence[Cell], root: str, overrides: Sequence[str],
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
    todo = [s for s in inspect_grid(cells, root) if s.status != "done"]
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
            f" ({_now()})", flush=True)
      if share:
        src = share_augmentation(st.cell, root, overrides)
        shared = [("augmented copies", "augmented_from",
                   share_augmentation(st.cell, root, overrides))]
        if not shared[0][2]:
          shared = [("generator top-M", "generator_from",
                     share_generator(st.cell, root, overrides))]
        what, field, src = shared[0]
        if src:
          print(f"    reusing the {what} of {src}", flush=True)
          with open(os.path.join(root, "grid_log.jsonl"), "a") as f:
            f.write(json.dumps({"cell": st.cell.name, field: src,
                                "time": _now()}) + "\n")
      rec = run_cell(st.cell, root, overrides, env, deadline, signals,
                     grace_s=grace_s, prefix=prefix, runner=runner,
                     lock_path=lock)
      records.append(rec)
      after = inspect_cell(st.cell, root)
      if rec["finished"]:
        failures = 0
        print(f"    finished in {_fmt_secs(rec['seconds'])}: {after.detail}",
              flush=True)
      elif rec["rc"] == 0 or rec.get("stopped"):
        print(f"    stopped ({rec.get('stopped', 'no results.json')}) after "
              f"{_fmt_secs(rec['seconds'])}; {after.detail}; resumes on the "
              "next invocation", flush=True)
      else:
        failures += 1
        print(f"    FAILED (rc {rec['rc']}) after "
              f"{_fmt_secs(rec['seconds'])}: {rec.get('error')}\n    log: "
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


# ----------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------
@dataclasses.dataclass
class Summary:
  """Finished seeds of one (dataset, model, mode) row."""
  seeds: list
  per_seed: dict          # seed -> {('test'|'valid', metric): value}

  @property
  def n(self) -> int:
    return len(self.seeds)

  def values(self, split: str, metric: str) -> list:
    return [self.per_seed[s][(split, metric)] for s in self.seeds
            if (split, metric) in self.per_seed[s]]

  def mean(self, split: str, metric: str) -> Optional[float]:
    v = self.values(split, metric)
    return statistics.fmean(v) if v else None

  def std(self, split: str, metric: str) -> Optional[float]:
    """Sample standard deviation over seeds (n - 1); None for one seed."""
    v = self.values(split, metric)
    return statistics.stdev(v) if len(v) >= 2 else None


def summarize(states: Sequence[CellState]) -> dict:
  """(dataset, model, mode) -> Summary of the finished cells."""
  out = {}
  for st in states:
    if st.status != "done":
      continue
    c = st.cell
    s = out.setdefault((c.dataset, c.model, c.mode), Summary([], {}))
    s.seeds.append(c.seed)
    s.per_seed[c.seed] = {(split, k): float(v) for split in ("test", "valid")
                          for k, v in st.results[split].items()}
  for s in out.values():
    s.seeds.sort()
  return out


@dataclasses.dataclass
class Lift:
  """A vs B on one metric over the seeds where both finished."""
  n: int
  mean_delta: Optional[float] = None
  std_delta: Optional[float] = None     # sample std of the paired deltas
  relative: Optional[float] = None      # mean delta / mean of B (same seeds)

  @property
  def call(self) -> Optional[str]:
    """up | down | flat (n >= 2, the one-std rule); up? | down? (one seed)."""
    if self.n == 0:
      return None
    if self.n == 1:
      return "up?" if self.mean_delta > 0 else (
          "down?" if self.mean_delta < 0 else "flat")
    if abs(self.mean_delta) > self.std_delta:
      return "up" if self.mean_delta > 0 else "down"
    return "flat"


def lift(a: Optional[Summary], b: Optional[Summary], split: str,
         metric: str) -> Lift:
  """Paired per-seed lift of row `a` over row `b`.

  delta_s = a_s - b_s for each seed s finished in both; the lift exceeds
  one std when |mean delta| > sample std of delta (needs two seeds).
  """
  if a is None or b is None:
    return Lift(0)
  seeds = [s for s in a.seeds if s in b.per_seed and
           (split, metric) in a.per_seed[s] and
           (split, metric) in b.per_seed[s]]
  if not seeds:
    return Lift(0)
  d = [a.per_seed[s][(split, metric)] - b.per_seed[s][(split, metric)]
       for s in seeds]
  base = statistics.fmean(b.per_seed[s][(split, metric)] for s in seeds)
  return Lift(len(seeds), statistics.fmean(d),
              statistics.stdev(d) if len(d) >= 2 else None,
              statistics.fmean(d) / base if base else None)


def paper_lift(dataset: str, model: str, mode_a: str, mode_b: str,
               metric: str) -> Optional[float]:
  a = paper_value(dataset, model, mode_a, metric)
  b = paper_value(dataset, model, mode_b, metric)
  return (a - b) / b if a is not None and b else None


# ----------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------
def _fmt_secs(s: float) -> str:
  s = float(s or 0)
  if s < 60:
    return f"{s:.0f}s"
  if s < 3600:
    return f"{s / 60:.1f} min"
  return f"{s / 3600:.1f} h"


def _now() -> str:
  return datetime.datetime.now().isoformat(timespec="seconds")


def _pct(x: Optional[float]) -> str:
  return "n/a" if x is None else f"{100 * x:+.1f}%"


def _ms(s: Optional[Summary], split: str, metric: str) -> str:
  """'mean ± std' (or 'mean' for one seed)."""
  if s is None or s.mean(split, metric) is None:
    return "not run"
  m, sd = s.mean(split, metric), s.std(split, metric)
  return f"{m:.4f}" if sd is None else f"{m:.4f} ± {sd:.4f}"


def _pv(v: Optional[float]) -> str:
  return "—" if v is None else f"{v:.4f}"


def _row_name(model: str, mode: str) -> str:
  return f"{MODEL_TITLES[model]} {MODE_TITLES[mode]}"


def _claim_label(calls: list) -> str:
  """One label for a comparison from its per-metric calls."""
  calls = [c for c in calls if c is not None]
  if not calls:
    return "not run"
  if all(c.endswith("?") or c == "flat" for c in calls) and any(
      c.endswith("?") for c in calls):
    if all(c == "up?" for c in calls):
      return "holds in direction on one seed only (no spread estimate)"
    if all(c == "down?" for c in calls):
      return "fails in direction on one seed only (no spread estimate)"
    return "mixed on one seed (no spread estimate)"
  ups = sum(c == "up" for c in calls)
  downs = sum(c == "down" for c in calls)
  if ups == len(calls):
    return "holds"
  if ups and downs:
    return "mixed (one metric up, another down, beyond 1 std)"
  if ups:
    return "partly holds (up beyond 1 std on some metrics, within 1 std on " \
           "the others)"
  if downs:
    return "does not hold: ours is worse beyond 1 std"
  return "not supported: the difference is within 1 std of seed noise"


def _magnitude(ours: Optional[float], paper: Optional[float]) -> str:
  if ours is None or paper is None:
    return ""
  if paper > 0 and ours <= 0:
    return "the paper's gain does not appear"
  if paper > 0 and ours < 0.5 * paper:
    return "our gain is less than half the paper's"
  if paper > 0 and ours > 1.5 * paper:
    return "our gain is larger than the paper's"
  if paper > 0:
    return "our gain is of the paper's size"
  return ""


def _claims(dataset: str, models: Sequence[str], modes: Sequence[str]):
  """(model, mode_a, mode_b, paper's claim) rows the verdict checks."""
  out = []
  for m in models:
    if "diff4rec" in modes and "base" in modes:
      src = "Table 2" if dataset == "ml-1m" else (
          "Table 2/3" if m == "sasrec" else "Table 3")
      out.append((m, "diff4rec", "base",
                  f"Diff4Rec improves {MODEL_TITLES[m]} ({src})"))
  if "sasrec" in models and "aug" in modes and "base" in modes:
    out.append(("sasrec", "aug", "base", "augmentation without the "
                "curriculum already beats the base model (Table 4, "
                "conclusion 1)"))
  if "sasrec" in models and "aug" in modes and "diff4rec" in modes:
    out.append(("sasrec", "diff4rec", "aug", "the curriculum beats random "
                "order (Table 4, conclusion 2)"))
  for ctl in CONTROL_MODES:
    if "sasrec" in models and ctl in modes and "diff4rec" in modes:
      out.append(("sasrec", "diff4rec", ctl, "the diffusion generator's "
                  f"candidates beat {ctl} ones (a control; the paper has "
                  "none)"))
  return out


def claim_results(dataset: str, summaries: dict, models: Sequence[str],
                  modes: Sequence[str]) -> list:
  """[(model, mode_a, mode_b, claim, label, {metric: Lift})] on test."""
  out = []
  for model, a, b, claim in _claims(dataset, models, modes):
    sa, sb = summaries.get((dataset, model, a)), summaries.get(
        (dataset, model, b))
    lifts = {m: lift(sa, sb, "test", m) for m in MAIN_METRICS}
    out.append((model, a, b, claim, _claim_label(
        [l.call for l in lifts.values()]), lifts))
  return out


def verdict(dataset: str, summaries: dict, models: Sequence[str],
            modes: Sequence[str]) -> list:
  """Plain-language bullets: which of the paper's claims hold here."""
  lines = []
  for model, a, b, claim, label, lifts in claim_results(
      dataset, summaries, models, modes):
    sa, sb = summaries.get((dataset, model, a)), summaries.get(
        (dataset, model, b))
    has_paper = any(paper_lift(dataset, model, a, b, m) is not None
                    for m in MAIN_METRICS)
    if label == "not run":
      missing = [f"{model} {mo}" for mo, s in ((a, sa), (b, sb)) if s is None]
      lines.append(f"- **{claim}**: not run (no finished seed of "
                   f"{' and '.join(missing) or 'a common seed'}).")
      continue
    parts = []
    for m, l in lifts.items():
      p = paper_lift(dataset, model, a, b, m)
      how = (f"{l.n} seeds, std of Δ {l.std_delta:.4f}" if l.n >= 2
             else "1 seed")
      txt = f"{m} {_pct(l.relative)} ({how})"
      if p is not None:
        txt += f" vs paper {_pct(p)}"
        mag = _magnitude(l.relative, p)
        if mag and l.call in ("up", "up?", "flat"):
          txt += f": {mag}"
      parts.append(txt)
    lv, lt = (lift(sa, sb, "valid", "NDCG@10"),
              lifts.get("NDCG@10") or Lift(0))
    if lv.n and lt.n and lv.mean_delta * lt.mean_delta < 0:
      parts.append(f"validation NDCG@10 moves the other way "
                   f"({_pct(lv.relative)}): the two splits disagree")
    paper_note = "" if has_paper else (
        " The paper has no number for this pair on this dataset; the line "
        "checks its general claim.")
    lines.append(f"- **{claim}**: {label}. Test {'; '.join(parts)}."
                 + paper_note)
  # Absolute levels next to the paper.
  levels = []
  for model in models:
    for mode in modes:
      s = summaries.get((dataset, model, mode))
      p = paper_value(dataset, model, mode, "NDCG@10")
      if s is not None and p is not None:
        ours = s.mean("test", "NDCG@10")
        levels.append(f"{_row_name(model, mode)} {ours:.4f} vs {p:.4f} "
                      f"(x{ours / p:.2f})")
  if levels:
    lines.append("- Absolute level, test NDCG@10 ours vs paper: "
                 + "; ".join(levels) + ". Differences in level come from "
                 "the setup (loss, preprocessing, tuning), not the method; "
                 "the claims above are about the lifts.")
  return lines


def _not_run_text(states: Sequence[CellState], models: Sequence[str],
                  modes: Sequence[str]) -> str:
  """'SASRec aug: seeds 1, 2; SASRec +Diff4Rec: seed 2 (partial: ...)'."""
  parts = []
  for m in models:
    for mo in modes:
      rows = [s for s in states if (s.cell.model, s.cell.mode) == (m, mo)
              and s.status != "done"]
      if not rows:
        continue
      todo = [str(s.cell.seed) for s in rows if s.status == "todo"]
      items = []
      if todo:
        items.append(f"seed{'s' if len(todo) > 1 else ''} {', '.join(todo)}")
      items += [f"seed {s.cell.seed} partial ({s.detail})" for s in rows
                if s.status == "partial"]
      parts.append(f"{_row_name(m, mo)}: {', '.join(items)}")
  return "; ".join(parts)


def _deviation_text(st: CellState) -> str:
  devs = config_deviations(expected_config(st.cell), st.config)
  return ", ".join(devs) if devs else "none"


def build_report(states: Sequence[CellState], datasets: Sequence[str],
                 models: Sequence[str], modes: Sequence[str],
                 seeds: Sequence[int], root: str, command: str,
                 machine: str, plot_note: str,
                 plot_link: Optional[str] = None) -> str:
  """The Markdown report of the finished cells (pure: no files touched)."""
  summaries = summarize(states)
  n_done = sum(s.status == "done" for s in states)
  L = []
  L.append("# Diff4Rec reproduction: our grid beside the paper\n")
  L.append(f"Generated {_now()} by `benchmarks/reproduce.py` from the "
           f"finished cells under `{root}` ({n_done} of {len(states)} grid "
           "cells finished). Only finished cells are counted; every number "
           "below comes from a `results.json` of a finished run or from the "
           "paper (Wu et al., ACM MM 2023, Tables 2-4).\n")
  L.append("## How this was made\n")
  L.append(f"- Command that wrote this report:\n\n  ```\n  {command}\n  ```\n")
  invocations = sorted({(st.last_attempt or {}).get("runner") for st in states
                        if st.status == "done"} - {None})
  if invocations:
    L.append("- Runner invocations that finished the cells:\n\n  ```\n"
             + "\n".join(f"  {c}" for c in invocations) + "\n  ```\n")
  setting = states[0].cell.setting if states else "strong"
  config_text = ("configs/paper.py:<dataset>" if setting == "paper"
                 else "configs/<dataset>.py")
  L.append(f"- Setting: {setting}.")
  L.append("- Each cell runs `python -m diff4rec_jax.main "
           f"--config={config_text} --workdir=<root>/<dataset>-<model>-"
           "<mode>-s<seed> --config.mode=<mode> --config.model.name=<model> "
           "--config.seed=<seed>` plus any overrides (listed per cell under "
           "*Cells*).")
  L.append(f"- Machine: {machine}.")
  devs = sorted({", ".join(st.results.get("devices", [])) for st in states
                 if st.status == "done" and st.results.get("devices")})
  if devs:
    L.append(f"- Devices recorded by the finished runs: {'; '.join(devs)}.")
  L.append("- Modes: `base` = the backbone alone (paper's SASRec/GRU4Rec/"
           "Caser rows); `aug` = diffusion augmentation without the "
           "curriculum (paper's *Diff4Rec w/o cur*, Table 4); `diff4rec` = "
           "augmentation with the curriculum (paper's *+Diff4Rec*).")
  shared = [st for st in states if st.augmented_from]
  if shared:
    L.append("- Shared augmentation: these cells reused the generated copies "
             "(`augmented.npz`) of their sibling of the other augmented mode "
             "(same dataset, backbone, seed and settings; train.py checks "
             "the file's config hash), so the pair differs only in the "
             "curriculum, as in the paper's Table 4 ablation: "
             + ", ".join(f"`{st.cell.name}` (from `{st.augmented_from}`)"
                         for st in shared) + ".")
  L.append("- Metrics: full ranking over all items, history masked, "
           "leave-one-out (as the paper). Model selection is on validation: "
           "each run keeps the epoch with the best validation NDCG@10 and "
           "reports test metrics of that checkpoint; *valid NDCG@10* below "
           "is that checkpoint's validation score.")
  L.append("- Our numbers: mean ± sample std (n − 1) over the finished "
           "seeds; n = number of seeds. Paper cells: the table they come "
           "from; — = the paper reports no number for that cell.")
  L.append("- Lift rule: for rows A and B, Δ_s = A_s − B_s for every seed s "
           "finished in both; relative lift = mean Δ / mean B over those "
           "seeds. A lift *exceeds one std* when |mean Δ| > the sample std "
           "of Δ_s (needs two paired seeds; with one seed the direction is "
           "shown but not judged). This is a 1-sigma band of seed-to-seed "
           "variation, not a significance test.")
  if plot_note:
    L.append(f"- {plot_note}")
  L.append("")

  L.append("## Verdicts at a glance\n")
  L.append("Test HR@10 and NDCG@10, finished cells only; details and the "
           "numbers are in each dataset's section.\n")
  L.append("| dataset | claim | verdict |")
  L.append("|---|---|---|")
  for ds in datasets:
    for _, _, _, claim, label, _ in claim_results(ds, summaries, models,
                                                  modes):
      L.append(f"| {ds} | {claim} | {label.split(' (')[0]} |")
  L.append("")

  for ds in datasets:
    L.append(f"## {DATASET_TITLES.get(ds, ds)} (`{ds}`)\n")
    rows = [(m, mo) for m in models for mo in modes]
    ds_states = [s for s in states if s.cell.dataset == ds]
    L.append("Test HR@10 / NDCG@10 (ours beside the paper) and the "
             "validation NDCG@10 used for model selection:\n")
    L.append("| row | n | HR@10 | paper | NDCG@10 | paper | valid NDCG@10 "
             "| paper source |")
    L.append("|---|---|---|---|---|---|---|---|")
    for m, mo in rows:
      s = summaries.get((ds, m, mo))
      src = PAPER.get((ds, m, mo), ("—",))[0]
      L.append(f"| {_row_name(m, mo)} | {s.n if s else 0} | "
               f"{_ms(s, 'test', 'HR@10')} | "
               f"{_pv(paper_value(ds, m, mo, 'HR@10'))} | "
               f"{_ms(s, 'test', 'NDCG@10')} | "
               f"{_pv(paper_value(ds, m, mo, 'NDCG@10'))} | "
               f"{_ms(s, 'valid', 'NDCG@10')} | {src} |")
    L.append("")
    L.append("Other test metrics (the paper reports these in Table 2 only; "
             "it has no NDCG@20):\n")
    hdr = "| row | n | " + " | ".join(
        f"{k} | paper" if k != "NDCG@20" else k for k in MORE_METRICS) + " |"
    L.append(hdr)
    L.append("|---|---|" + "---|" * (2 * len(MORE_METRICS) - 1))
    for m, mo in rows:
      s = summaries.get((ds, m, mo))
      cells = []
      for k in MORE_METRICS:
        cells.append(_ms(s, "test", k))
        if k != "NDCG@20":
          cells.append(_pv(paper_value(ds, m, mo, k)))
      L.append(f"| {_row_name(m, mo)} | {s.n if s else 0} | "
               + " | ".join(cells) + " |")
    L.append("")
    L.append("Lifts (paired by seed; see the lift rule above; rows with "
             "neither our nor the paper's number are left out):\n")
    L.append("| backbone | comparison | metric | ours: relative (mean Δ) | "
             "std of Δ | paired seeds | beyond 1 std? | paper relative |")
    L.append("|---|---|---|---|---|---|---|---|")
    for m in models:
      for a, b in COMPARISONS:
        if a not in modes or b not in modes:
          continue
        sa, sb = summaries.get((ds, m, a)), summaries.get((ds, m, b))
        for split, k in LIFT_METRICS:
          l = lift(sa, sb, split, k)
          p = paper_lift(ds, m, a, b, k) if split == "test" else None
          if l.n == 0 and p is None:
            continue
          if l.n == 0:
            ours, sd, beyond = "not run", "—", "—"
          else:
            ours = f"{_pct(l.relative)} ({l.mean_delta:+.4f})"
            sd = "—" if l.std_delta is None else f"{l.std_delta:.4f}"
            beyond = {"up": "yes, up", "down": "yes, down",
                      "flat": "no"}.get(l.call, "n/a (1 seed)")
          L.append(f"| {MODEL_TITLES[m]} | {a} vs {b} | {split} {k} | "
                   f"{ours} | {sd} | {l.n} | {beyond} | "
                   f"{_pct(p) if p is not None else '—'} |")
    L.append("")
    L.append("**Verdict** (test metrics of finished cells only):\n")
    L.extend(verdict(ds, summaries, models, modes))
    not_run = _not_run_text(ds_states, models, modes)
    if not_run:
      L.append("- Not run (not counted anywhere above): " + not_run + ".")
    L.append("")

  if plot_link:
    L.append("## Validation NDCG@10 per epoch\n")
    L.append(f"SASRec, seed {seeds[0]}, one panel per dataset; an "
             "unfinished run is marked so in the legend.\n")
    L.append(f"![validation NDCG@10 per epoch]({plot_link})\n")
  L.extend(curve_tables(states, datasets, seeds[0]))
  L.append("## Cells\n")
  L.append("Every cell of the grid in run order. *Settings differing from "
           "the config file* lists fields whose values differ from "
           "`configs/<dataset>.py` with the cell's mode, model and seed "
           "(e.g. fewer epochs in a shortened run).\n")
  L.append("| cell | status | details | settings differing from the "
           "config file |")
  L.append("|---|---|---|---|")
  for st in states:
    status = {"done": "finished", "partial": "not run (partial)",
              "todo": "not run"}[st.status]
    L.append(f"| `{st.cell.name}` | {status} | {st.detail or '—'} | "
             f"{_deviation_text(st) if st.config else '—'} |")
  L.append("")
  return "\n".join(L)


def machine_description() -> str:
  """CPU model and count from /proc/cpuinfo, memory, and jax.devices()."""
  cpu = machine_info.cpu_model()
  mem = ""
  try:
    with open("/proc/meminfo") as f:
      kb = int(next(l for l in f if l.startswith("MemTotal")).split()[1])
    mem = f", {kb / 2**20:.0f} GiB RAM"
  except (OSError, StopIteration, ValueError):
    pass
  # In a child process: jax.devices() here would hold the accelerator (and,
  # on a GPU, most of its memory) for as long as the runner lives.
  try:
    out = subprocess.run(
        [sys.executable, "-c", "import jax; print('jax', jax.__version__, "
         "'devices', jax.devices())"], capture_output=True, text=True,
        timeout=300, check=True).stdout.strip().splitlines()
    devs = f"; {out[-1]}" if out else ""
  except (subprocess.SubprocessError, OSError) as e:
    devs = f"; jax devices unknown ({type(e).__name__})"
  return f"{os.cpu_count()} x {cpu}{mem}{devs}"


def curve_tables(states: Sequence[CellState], datasets: Sequence[str],
                 seed: int, max_cols: int = 16) -> list:
  """Markdown lines: validation NDCG@10 at the evaluated epochs, per dataset.

  One row per model and mode at `seed`, finished or not (a partial cell's
  curve is what it has evaluated so far), so runs can be compared at the
  same epoch while the grid fills. Columns: the epochs evaluated by every
  row (thinned to at most `max_cols`), then each row's best so far.
  """
  out = []
  for ds in datasets:
    rows = [st for st in states if st.cell.dataset == ds
            and st.cell.seed == seed and st.curve]
    if not rows:
      continue
    common = sorted(set.intersection(*(set(e for e, _ in st.curve)
                                       for st in rows)))
    if len(common) > max_cols:
      step = -(-len(common) // max_cols)
      common = common[::-1][::step][::-1]    # keep the latest epoch
    if not out:
      out.append("Validation NDCG@10 by epoch, seed "
                 f"{seed} (every cell with evaluations, finished or not; "
                 "epochs that all rows of a dataset have evaluated):\n")
    out.append(f"**{DATASET_TITLES.get(ds, ds)}**\n")
    out.append("| cell | status | " + " | ".join(f"ep {e}" for e in common)
               + " | best so far (epoch) |")
    out.append("|---|---|" + "---|" * len(common) + "---|")
    for st in rows:
      curve = dict(st.curve)
      best = max(st.curve, key=lambda r: r[1])
      out.append(f"| `{st.cell.name}` | {st.status} | "
                 + " | ".join(f"{curve[e]:.4f}" for e in common)
                 + f" | {best[1]:.4f} ({best[0]}) |")
    out.append("")
  return out


def write_plot(states: Sequence[CellState], datasets: Sequence[str],
               seed: int, path: str) -> str:
  """Validation NDCG@10 per epoch, SASRec, one panel per dataset.

  Returns a note for the report (what was plotted, or why not).
  """
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    import matplotlib.ticker  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return ("Plot skipped: matplotlib is not installed (`pip install "
            "matplotlib` and rerun with --report_only).")
  by_cell = {(s.cell.dataset, s.cell.model, s.cell.mode, s.cell.seed): s
             for s in states}
  fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.8),
                           squeeze=False)
  for ax, ds in zip(axes[0], datasets):
    drawn = 0
    for mode in ALL_MODES:
      st = by_cell.get((ds, "sasrec", mode, seed))
      if st is None or not st.curve:
        continue
      ep, v = zip(*st.curve)
      label = mode + ("" if st.status == "done" else " (unfinished)")
      ax.plot(ep, v, marker="o", markersize=3, label=label)
      drawn += 1
    ax.set_title(f"{ds}: SASRec, seed {seed}", fontsize=10)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("validation NDCG@10")
    ax.grid(alpha=0.3)
    if drawn:
      ax.legend(fontsize=8)
    else:
      ax.text(0.5, 0.5, "no runs yet", ha="center", va="center",
              transform=ax.transAxes)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return (f"Plot: `{os.path.basename(path)}`, validation NDCG@10 per epoch "
          f"of SASRec seed {seed} in each mode, from the runs' "
          "metrics.jsonl.")


def write_report(cells: Sequence[Cell], args, command: str,
                 machine: Optional[str] = None) -> str:
  states = inspect_grid(cells, args.root)
  note = write_plot(states, args.datasets, args.seeds[0], args.plot)
  print(note, flush=True)
  link = (os.path.relpath(args.plot, os.path.dirname(args.report))
          if note.startswith("Plot:") else None)
  text = build_report(states, args.datasets, args.models, args.modes,
                      args.seeds, args.root, command,
                      machine or args.machine or machine_description(), note,
                      link)
  os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
  tmp = args.report + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, args.report)
  print(f"wrote {args.report}", flush=True)
  return text


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------
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
  p.add_argument("--datasets", default=",".join(DEFAULT_DATASETS),
                 help=f"comma-separated, from {list(DATASET_CONFIGS)}")
  p.add_argument("--setting", default="strong", choices=SETTINGS,
                 help="strong: configs/<dataset>.py; paper: "
                 "configs/paper.py:<dataset> (BCE, one negative, hidden 50)")
  p.add_argument("--models", default=",".join(MODELS))
  p.add_argument("--modes", default=",".join(MODES))
  p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)))
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
                 help="extra '--config.x=y ...' for every cell")
  p.add_argument("--data_dir", default=None,
                 help="passed to the cells as $DIFF4REC_DATA_DIR")
  p.add_argument("--report",
                 default=os.path.join(REPO, "results", "REPRODUCTION.md"))
  p.add_argument("--plot", default=None,
                 help="PNG path; default <report name, lower case>_ndcg.png "
                 "next to --report")
  p.add_argument("--no_share_augmentation", dest="share_augmentation",
                 action="store_false",
                 help="build the augmented copies in every aug/diff4rec "
                 "cell instead of reusing its sibling's (see "
                 "share_augmentation)")
  p.add_argument("--machine", default=None,
                 help="machine description for the report (default: "
                 "/proc/cpuinfo + jax.devices())")
  args = p.parse_args(argv)
  args.datasets = _csv(args.datasets, list(DATASET_CONFIGS), "datasets")
  args.models = _csv(args.models, MODELS, "models")
  args.modes = _csv(args.modes, ALL_MODES, "modes")
  try:
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  except ValueError:
    raise SystemExit(f"--seeds: expected integers, got {args.seeds!r}")
  if not args.seeds:
    raise SystemExit("--seeds: empty")
  try:
    args.overrides = parse_overrides(args.overrides)
  except ValueError as e:
    raise SystemExit(str(e))
  args.root = os.path.abspath(args.root)
  args.report = os.path.abspath(args.report)
  # REPRODUCTION.md -> reproduction_ndcg.png, REPRODUCTION_paper.md ->
  # reproduction_paper_ndcg.png: one plot per report.
  stem = os.path.splitext(os.path.basename(args.report))[0].lower()
  args.plot = os.path.abspath(args.plot or os.path.join(
      os.path.dirname(args.report), f"{stem}_ndcg.png"))
  return args


def print_plan(cells: Sequence[Cell], args) -> None:
  states = inspect_grid(cells, args.root)
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
    devs = config_deviations(expected_config(st.cell, args.overrides),
                             st.config)
    extra = f" [settings differ: {', '.join(devs)}]" if devs else ""
    print(f"{i + 1:3d}. {st.cell.name:32s} {st.status:8s} "
          f"{st.detail}{extra}{will}")
  counts = {k: sum(s.status == k for s in states)
            for k in ("done", "partial", "todo")}
  print(f"{len(states)} cells: {counts['done']} done, {counts['partial']} "
        f"partial, {counts['todo']} todo")


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  cells = plan_cells(args.datasets, args.models, args.modes, args.seeds,
                     args.setting)
  env = dict(os.environ)
  if args.data_dir:
    env["DIFF4REC_DATA_DIR"] = os.path.abspath(args.data_dir)
  prefix_env = (f"DIFF4REC_DATA_DIR={env['DIFF4REC_DATA_DIR']} "
                if env.get("DIFF4REC_DATA_DIR") else "")
  command = prefix_env + shlex.join(
      ["python", "benchmarks/reproduce.py"]
      + list(sys.argv[1:] if argv is None else argv))
  if args.dry_run:
    print_plan(cells, args)
    return 0
  if args.report_only:
    write_report(cells, args, command)
    return 0
  default_report = os.path.join(REPO, "results", "REPRODUCTION.md")
  if args.overrides and args.report == default_report:
    print(f"note: --overrides given and the report goes to {args.report}; "
          "its cells table lists every changed setting", flush=True)
  machine = args.machine or machine_description()
  records = run_grid(
      cells, args.root, args.overrides, env, max_cells=args.max_cells,
      time_budget_min=args.time_budget_min,
      cell_timeout_min=args.cell_timeout_min, hard_budget=args.hard_budget,
      share=args.share_augmentation, runner=command,
      after_cell=lambda: write_report(cells, args, command, machine))
  if not records:
    write_report(cells, args, command, machine)
  failed = [r for r in records if r["rc"] != 0 and not r.get("stopped")]
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
