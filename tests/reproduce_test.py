"""Tests for the reproduction grid: benchmarks/reproduce.py (the command
line), grid.py (plan, status, configs), runner.py, stats.py, report.py and
paper.py.

No training: the grid roots are TEST FIXTURES written by hand into tmp_path
(results.json / metrics.jsonl / config.json with made-up numbers), and the
runner is exercised with a fake trainer script that writes those files.
"""

import json
import os
import statistics
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import grid
from benchmarks import paper
from benchmarks import report
from benchmarks import reproduce as rp
from benchmarks import runner
from benchmarks import stats
from benchmarks import verdicts
from diff4rec_jax import pool as pool_lib

Cell = grid.Cell
METRICS = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR")

# Made-up test metrics of the fixture cells (HR@10, NDCG@10); the other
# metrics are derived from these so every field is present.
FIXTURE = {
    Cell("beauty", "sasrec", "base", 0): (0.060, 0.030),
    Cell("beauty", "sasrec", "base", 1): (0.064, 0.032),
    Cell("beauty", "sasrec", "base", 2): (0.062, 0.031),
    Cell("beauty", "sasrec", "diff4rec", 0): (0.063, 0.034),
    Cell("beauty", "sasrec", "diff4rec", 1): (0.063, 0.035),
    Cell("beauty", "sasrec", "aug", 0): (0.061, 0.033),
}
PARTIAL = Cell("beauty", "sasrec", "diff4rec", 2)


def _metrics(hr10, ndcg10, scale=1.0):
  return {"HR@5": hr10 * 0.5 * scale, "HR@10": hr10 * scale,
          "HR@20": hr10 * 1.5 * scale, "NDCG@5": ndcg10 * 0.8 * scale,
          "NDCG@10": ndcg10 * scale, "NDCG@20": ndcg10 * 1.2 * scale,
          "MRR": ndcg10 * 0.9 * scale}


def _write_jsonl(path, records):
  with open(path, "w") as f:
    for r in records:
      f.write(json.dumps(r) + "\n")


def write_done(root, cell, hr10, ndcg10, **config_changes):
  """A finished cell: config.json, metrics.jsonl and results.json."""
  wd = os.path.join(root, cell.name)
  os.makedirs(wd, exist_ok=True)
  cfg = _nested(grid.expected_config(cell))
  for k, v in config_changes.items():
    node = cfg
    *path, last = k.split(".")
    for p in path:
      node = node[p]
    node[last] = v
  with open(os.path.join(wd, "config.json"), "w") as f:
    json.dump(cfg, f)
  valid = _metrics(hr10, ndcg10, scale=1.1)
  _write_jsonl(os.path.join(wd, "metrics.jsonl"), [
      {"epoch": 1, "train_loss": 9.0},
      {"epoch": 5, "valid/NDCG@10": valid["NDCG@10"] * 0.9},
      {"epoch": 10, "valid/NDCG@10": valid["NDCG@10"]},
      {"epoch": 10, "final": True, "best_valid/NDCG@10": valid["NDCG@10"]},
  ])
  res = {"best_epoch": 10, "epochs_run": 10, "train_seconds": 123.0,
         "valid": valid, "test": _metrics(hr10, ndcg10), "config": cfg,
         "devices": ["TFRT_CPU_0"]}
  with open(os.path.join(wd, "results.json"), "w") as f:
    json.dump(res, f)


def write_partial(root, cell, epochs):
  wd = os.path.join(root, cell.name)
  os.makedirs(wd, exist_ok=True)
  with open(os.path.join(wd, "config.json"), "w") as f:
    json.dump(_nested(grid.expected_config(cell)), f)
  _write_jsonl(os.path.join(wd, "metrics.jsonl"), [
      {"epoch": e, "valid/NDCG@10": 0.02 + 0.001 * e} for e in epochs])


def _nested(flat):
  out = {}
  for k, v in flat.items():
    node = out
    *path, last = k.split(".")
    for p in path:
      node = node.setdefault(p, {})
    node[last] = v
  return out


@pytest.fixture()
def grid_root(tmp_path):
  root = str(tmp_path / "grid")
  for cell, (hr, nd) in FIXTURE.items():
    write_done(root, cell, hr, nd)
  write_partial(root, PARTIAL, epochs=(5, 10, 15))
  return root


def default_cells():
  return grid.plan_cells(grid.DEFAULT_DATASETS, grid.MODELS, grid.MODES,
                         grid.DEFAULT_SEEDS)


def test_plan_order_follows_the_issue():
  cells = default_cells()
  assert len(cells) == len(set(cells)) == 3 * 3 * 3 * 3
  names = [c.name for c in cells]
  # 1. SASRec x 3 modes x {beauty, yelp} x 3 seeds, seed by seed.
  assert names[:6] == [
      "beauty-sasrec-base-s0", "beauty-sasrec-aug-s0",
      "beauty-sasrec-diff4rec-s0", "yelp-sasrec-base-s0",
      "yelp-sasrec-aug-s0", "yelp-sasrec-diff4rec-s0"]
  first18 = cells[:18]
  assert {(c.model, c.dataset) for c in first18} == {
      ("sasrec", "beauty"), ("sasrec", "yelp")}
  assert sorted(c.seed for c in first18) == [0] * 6 + [1] * 6 + [2] * 6
  # 2. SASRec x 3 modes on ML-1M, one seed.
  assert names[18:21] == ["ml-1m-sasrec-base-s0", "ml-1m-sasrec-aug-s0",
                          "ml-1m-sasrec-diff4rec-s0"]
  # 3. GRU4Rec and Caser x {base, diff4rec} on Beauty, one seed.
  assert names[21:25] == [
      "beauty-gru4rec-base-s0", "beauty-gru4rec-diff4rec-s0",
      "beauty-caser-base-s0", "beauty-caser-diff4rec-s0"]
  # 4. The rest at seed 0 before any other seed of the rest.
  rest = cells[25:]
  first_other_seed = next(i for i, c in enumerate(rest) if c.seed != 0)
  assert all(c.seed == 0 for c in rest[:first_other_seed])
  assert all(c.seed != 0 for c in rest[first_other_seed:])
  assert {c.name for c in rest[:first_other_seed]} >= {
      "beauty-gru4rec-aug-s0", "yelp-caser-diff4rec-s0",
      "ml-1m-gru4rec-base-s0"}


def test_plan_respects_filters_and_smoke_dataset():
  cells = grid.plan_cells(["ml-100k"], ["sasrec"], ["base", "diff4rec"], [0])
  assert [c.name for c in cells] == ["ml-100k-sasrec-base-s0",
                                     "ml-100k-sasrec-diff4rec-s0"]
  assert grid.DATASET_CONFIGS["ml-100k"] == "configs/tiny.py"
  cmd = grid.cell_command(cells[1], "/r", ["--config.train.num_epochs=2"],
                          prefix=["py", "-m", "m"])
  assert cmd == ["py", "-m", "m", "--config=configs/tiny.py",
                 "--workdir=/r/ml-100k-sasrec-diff4rec-s0",
                 "--config.mode=diff4rec", "--config.model.name=sasrec",
                 "--config.seed=0", "--config.train.num_epochs=2"]


def test_status_done_partial_todo(grid_root):
  states = {s.cell: s for s in grid.inspect_grid(default_cells(), grid_root)}
  for cell in FIXTURE:
    assert states[cell].status == "done"
  assert states[PARTIAL].status == "partial"
  assert "epoch 15" in states[PARTIAL].detail
  assert states[PARTIAL].curve == [(5, 0.025), (10, 0.03), (15, 0.035)]
  todo = [c for c, s in states.items() if s.status == "todo"]
  assert len(todo) == 81 - len(FIXTURE) - 1
  assert Cell("yelp", "sasrec", "base", 0) in todo
  # An empty workdir (made, nothing written) is still todo.
  os.makedirs(os.path.join(grid_root, "yelp-sasrec-base-s0"))
  st = grid.inspect_cell(Cell("yelp", "sasrec", "base", 0), grid_root)
  assert st.status == "todo"


def test_mean_std_and_lift(grid_root):
  states = grid.inspect_grid(default_cells(), grid_root)
  s = stats.summarize(states)
  base = s[("beauty", "sasrec", "base")]
  assert base.seeds == [0, 1, 2]
  ref = np.array([0.030, 0.032, 0.031])
  assert base.mean("test", "NDCG@10") == pytest.approx(ref.mean())
  assert base.std("test", "NDCG@10") == pytest.approx(ref.std(ddof=1))
  d4r = s[("beauty", "sasrec", "diff4rec")]
  assert d4r.seeds == [0, 1]                  # the partial seed 2 is out
  assert d4r.std("test", "HR@10") == pytest.approx(0.0)
  assert s[("beauty", "sasrec", "aug")].std("test", "HR@10") is None
  assert ("yelp", "sasrec", "base") not in s

  # NDCG@10, paired seeds 0 and 1: deltas 0.004, 0.003.
  l = stats.lift(d4r, base, "test", "NDCG@10")
  d = np.array([0.034 - 0.030, 0.035 - 0.032])
  assert l.n == 2
  assert l.mean_delta == pytest.approx(d.mean())
  assert l.std_delta == pytest.approx(d.std(ddof=1))
  assert l.relative == pytest.approx(d.mean() / np.mean([0.030, 0.032]))
  assert l.call == "up"                       # 0.0035 > 0.0007
  # HR@10: deltas +0.003, -0.001 -> mean 0.001 < std 0.0028: within noise.
  l = stats.lift(d4r, base, "test", "HR@10")
  assert l.mean_delta == pytest.approx(0.001)
  assert l.call == "flat"
  # One paired seed: a direction, not a judgement.
  l = stats.lift(s[("beauty", "sasrec", "aug")], base, "test", "NDCG@10")
  assert (l.n, l.std_delta, l.call) == (1, None, "up?")
  assert stats.lift(None, base, "test", "NDCG@10").n == 0
  # Paper lifts: Table 3 SASRec on Beauty, Table 4 w/o cur.
  assert paper.paper_lift("beauty", "sasrec", "diff4rec", "base",
                          "HR@10") == pytest.approx((0.0871 - 0.0633) / 0.0633)
  assert paper.paper_lift(
      "beauty", "sasrec", "diff4rec", "aug",
      "NDCG@10") == pytest.approx((0.0426 - 0.0417) / 0.0417)
  assert paper.paper_lift("ml-1m", "sasrec", "aug", "base", "HR@10") is None


def test_paper_numbers_match_the_other_transcription():
  from benchmarks import quality_table  # pylint: disable=g-import-not-at-top
  for (ds, name), vals in quality_table.PAPER.items():
    model, mode = (("sasrec", "diff4rec") if name == "diff4rec"
                   else (name, "base"))
    for k, v in zip(quality_table.COLS, vals):
      assert paper.paper_value(ds, model, mode, k) == v, (ds, name, k)
  # Table 3 backbones and Table 4 (w/o cur = aug), from the brief.
  assert paper.paper_value("beauty", "gru4rec", "diff4rec", "NDCG@10") == 0.0190
  assert paper.paper_value("beauty", "caser", "diff4rec", "HR@10") == 0.0375
  assert paper.paper_value("yelp", "sasrec", "aug", "NDCG@10") == 0.0165
  assert paper.paper_value("steam", "sasrec", "aug", "HR@10") == 0.1108
  assert paper.paper_value("beauty", "gru4rec", "diff4rec", "MRR") is None


def test_report_has_paper_cells_and_lists_not_run(grid_root):
  cells = default_cells()
  states = grid.inspect_grid(cells, grid_root)
  text = report.build_report(states, grid.DEFAULT_DATASETS, grid.MODELS,
                             grid.MODES, grid.DEFAULT_SEEDS, grid_root,
                             "python x", "TEST CPU", "Plot skipped: test")
  lines = text.splitlines()

  def row(ds_title, name):
    start = lines.index(next(l for l in lines if l.startswith(
        f"## {ds_title}")))
    return next(l for l in lines[start:] if l.startswith(f"| {name} |"))

  base = row("Amazon Beauty", "SASRec base")
  ref = np.array([0.030, 0.032, 0.031])
  assert f"{ref.mean():.4f} ± {ref.std(ddof=1):.4f}" in base
  assert "| 3 |" in base and "0.0633" in base and "0.0303" in base
  d4r = row("Amazon Beauty", "SASRec +Diff4Rec")
  assert "| 2 |" in d4r and "0.0871" in d4r and "0.0426" in d4r
  aug = row("Amazon Beauty", "SASRec +Diff4Rec w/o cur (aug)")
  assert "0.0850" in aug and "0.0417" in aug and "| 1 |" in aug
  gru = row("Amazon Beauty", "GRU4Rec +Diff4Rec")
  assert gru.count("not run") == 3 and "0.0372" in gru and "0.0190" in gru
  # Nothing finished on Yelp: our cells say 'not run', the paper's are shown.
  y = row("Yelp", "SASRec base")
  assert y.startswith("| SASRec base | 0 | not run | 0.0286 | not run | "
                      "0.0134 | not run |")
  assert "0.0411" in row("Yelp", "SASRec +Diff4Rec")
  assert "0.0824" in row("MovieLens-1M", "SASRec base")
  # Verdicts follow the one-std rule; unfinished cells are listed.
  assert "**Diff4Rec improves SASRec (Table 2/3)**: partly holds" in text
  assert ("**augmentation without the curriculum already beats the base "
          "model (Table 4, conclusion 1)**: holds in direction on one seed "
          "only") in text
  beauty_not_run = next(l for l in lines if l.startswith("- Not run"))
  assert "SASRec +Diff4Rec: seed 2 partial (training" in beauty_not_run
  assert "SASRec +Diff4Rec w/o cur (aug): seeds 1, 2;" in beauty_not_run
  assert "GRU4Rec base: seeds 0, 1, 2;" in beauty_not_run
  assert "| beauty | Diff4Rec improves SASRec (Table 2/3) | partly holds |" \
      in text
  assert "| yelp | Diff4Rec improves SASRec (Table 2/3) | not run |" in text
  assert "Diff4Rec improves SASRec (Table 2/3)**: not run" in text  # Yelp
  assert "validation" in text and "TEST CPU" in text and "python x" in text
  # The augmentation the aug / diff4rec cells ran with is stated once.
  assert ("- Augmentation of the aug and diff4rec cells (from the first "
          "one's config; per-cell changes are under *Cells*): "
          "`augment.ratio=0.2`, `augment.reorder=True`") in text
  # Lift table row: ours, std, pairs, beyond-1-std call, the paper's lift.
  lift_row = next(l for l in lines if l.startswith(
      "| SASRec | diff4rec vs base | test NDCG@10 |"))
  assert "| 2 | yes, up | +40.6% |" in lift_row
  # Every cell with a config is in the cells table, no changed settings.
  assert "| `beauty-sasrec-base-s0` | finished |" in text
  assert text.count("| none |") == len(FIXTURE) + 1     # + the partial


def test_report_flags_changed_settings(tmp_path):
  root = str(tmp_path / "g")
  cell = Cell("beauty", "sasrec", "base", 0)
  write_done(root, cell, 0.05, 0.02, **{"train.num_epochs": 2})
  states = grid.inspect_grid([cell], root)
  text = report.build_report(states, ["beauty"], ["sasrec"], ["base"], [0],
                             root, "cmd", "m", "")
  assert "train.num_epochs=2" in text


def test_overrides_parse_and_expected_config():
  toks = grid.parse_overrides("--config.train.num_epochs=2 "
                              "--config.train.length_buckets=(8,16) "
                              "--config.train.mask_history=False "
                              "--config.train.lr=5e-4")
  exp = grid.expected_config(Cell("beauty", "caser", "aug", 1), toks)
  assert exp["train.num_epochs"] == 2 and exp["train.lr"] == 5e-4
  assert exp["train.length_buckets"] == [8, 16]
  assert exp["train.mask_history"] is False
  assert (exp["mode"], exp["model.name"], exp["seed"]) == ("aug", "caser", 1)
  assert exp["data.name"] == "beauty"
  with pytest.raises(ValueError, match="set by the grid"):
    grid.parse_overrides("--config.seed=3")
  with pytest.raises(ValueError, match="--config.field=value"):
    grid.parse_overrides("--train.num_epochs=2")


FAKE_TRAINER = '''
import json, os, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
wd = args["workdir"]
os.makedirs(wd, exist_ok=True)
with open(os.path.join(wd, "config.json"), "w") as f:
  json.dump({"mode": args["config.mode"]}, f)
seed = int(args["config.seed"])
if seed == 1:                  # preempted: checkpoint saved, no results
  sys.exit(143)                # 128 + SIGTERM (main.py's exit code)
if seed == 2:
  print("ValueError: config.x: bad", file=sys.stderr)
  sys.exit(1)
m = {k: 0.01 for k in ("HR@10", "NDCG@10")}
with open(os.path.join(wd, "results.json"), "w") as f:
  json.dump({"test": m, "valid": m, "best_epoch": 1, "epochs_run": 1,
             "train_seconds": 1.0}, f)
'''


def test_runner_skips_finished_cells_and_resumes(tmp_path):
  fake = tmp_path / "fake_main.py"
  fake.write_text(FAKE_TRAINER)
  root = str(tmp_path / "g")
  cells = grid.plan_cells(["ml-100k"], ["sasrec"], ["base", "diff4rec"],
                          [0, 1, 2])
  prefix = [sys.executable, str(fake)]
  calls = []
  recs = runner.run_grid(cells, root, [], dict(os.environ), max_cells=2,
                         prefix=prefix, after_cell=lambda: calls.append(1))
  assert [r["cell"] for r in recs] == [c.name for c in cells[:2]]
  assert all(r["finished"] for r in recs) and len(calls) == 2
  # Second invocation: the two finished cells are skipped.
  recs = runner.run_grid(cells, root, [], dict(os.environ), prefix=prefix,
                         max_consecutive_failures=10)
  assert [r["cell"] for r in recs] == [c.name for c in cells[2:]]
  by = {r["cell"]: r for r in recs}
  assert by["ml-100k-sasrec-base-s1"]["rc"] == 143
  assert not by["ml-100k-sasrec-base-s1"]["finished"]
  assert "stopped" in by["ml-100k-sasrec-base-s1"]   # resumable, not failed
  assert by["ml-100k-sasrec-base-s2"]["rc"] == 1
  assert "ValueError: config.x: bad" in by["ml-100k-sasrec-base-s2"]["error"]
  states = {s.cell.seed: s.status for s in grid.inspect_grid(cells, root)}
  assert states == {0: "done", 1: "partial", 2: "partial"}
  st = grid.inspect_cell(cells[-1], root, grid.read_grid_log(root))
  assert "last attempt failed (rc 1)" in st.detail
  with open(os.path.join(root, "grid_log.jsonl")) as f:
    assert len(f.read().splitlines()) == 6
  assert not os.path.exists(os.path.join(root, "runner.pid"))
  # A third invocation only retries the unfinished cells.
  recs = runner.run_grid(cells, root, [], dict(os.environ), prefix=prefix,
                         time_budget_min=1e-9)
  assert recs == []


def test_dry_run_and_report_only_cli(grid_root, tmp_path, capsys):
  report = str(tmp_path / "out" / "R.md")
  assert rp.main([f"--root={grid_root}", "--datasets=beauty",
                  "--models=sasrec", "--dry_run", "--max_cells=1"]) == 0
  out = capsys.readouterr().out
  assert "beauty-sasrec-diff4rec-s2" in out and "partial" in out
  assert "9 cells: 6 done, 1 partial, 2 todo" in out
  lines = [l for l in out.splitlines() if "<- runs" in l]
  assert len(lines) == 1 and "yelp" not in lines[0]
  assert not os.path.exists(report)
  assert rp.main([f"--root={grid_root}", "--datasets=beauty",
                  "--models=sasrec", "--report_only", f"--report={report}",
                  "--machine=TEST MACHINE"]) == 0
  with open(report) as f:
    text = f.read()
  assert "TEST MACHINE" in text and "0.0871" in text


def test_dry_run_estimates_what_is_left_from_finished_cells(grid_root,
                                                            tmp_path,
                                                            capsys):
  # Attempts (seconds) as the runner logs them: base cells 100 + 20, 180,
  # 300 (median 180); augmented 1000, 3000; a shared-copies record and a
  # Yelp cell are not of the Beauty SASRec kinds.
  recs = [("beauty-sasrec-base-s0", 100), ("beauty-sasrec-base-s0", 20),
          ("beauty-sasrec-base-s1", 180), ("beauty-sasrec-base-s2", 300),
          ("beauty-sasrec-aug-s0", 1000), ("beauty-sasrec-diff4rec-s0", 3000),
          ("beauty-sasrec-diff4rec-s2", 500), ("yelp-sasrec-base-s0", 7)]
  log = os.path.join(grid_root, "grid_log.jsonl")
  with open(log, "w") as f:
    for cell, secs in recs:
      f.write(json.dumps({"cell": cell, "seconds": secs}) + "\n")
    f.write(json.dumps({"cell": "beauty-sasrec-aug-s1", "seconds": 9999,
                        "augmented_from": "beauty-sasrec-diff4rec-s1"}) + "\n")
  cells = grid.plan_cells(["beauty"], ["sasrec", "caser"],
                          ["base", "aug", "diff4rec"], [0, 1, 2])
  states = grid.inspect_grid(cells, grid_root)
  assert grid.cell_seconds(grid_root)["beauty-sasrec-base-s0"] == 120
  # A finished cell's time is the larger of its logged attempts and its
  # results' train_seconds (123 s in every fixture): base 123, 180, 300;
  # augmented 1000, 3000 and 123 (diff4rec s1, killed without a log
  # record). Unfinished Beauty SASRec cells: aug s1, aug s2, diff4rec s2
  # (partial), each the augmented median, 1000 s. Caser: no finished cell.
  left = grid.estimate_left(states, grid_root)
  assert tuple(left) == (3 * 1000.0, 3, 0, 9)
  assert rp.main([f"--root={grid_root}", "--datasets=beauty",
                  "--models=sasrec,caser", "--dry_run"]) == 0
  out = capsys.readouterr().out
  assert "left: about 50.0 min of wall time for 3 of 12 cells:\n  3 as the" in out
  assert "\n  9 without an estimate (no finished cell of their kind)" in out

  # ML-1M SASRec has a finished base cell (logged 40 s, trained 123 s) and
  # no augmented one, and only ML-1M is planned: its aug and diff4rec cells
  # are scaled by the median over the root's pairs of augmented / base
  # median: Beauty SASRec 1000 / 180 and Beauty Caser 300 / 123 (not by
  # the ratio of the medians of all augmented and all base cells, 650 /
  # 123). A Caser aug cell linked in from another root, logged here at
  # 99999 s, is left out (with it Caser's ratio would be about 400).
  write_done(grid_root, Cell("ml-1m", "sasrec", "base", 0), 0.2, 0.1)
  write_done(grid_root, Cell("beauty", "caser", "base", 0), 0.03, 0.015)
  write_done(grid_root, Cell("beauty", "caser", "aug", 0), 0.03, 0.015)
  other = str(tmp_path / "other")
  write_done(other, Cell("beauty", "caser", "aug", 1), 0.03, 0.015)
  os.symlink(os.path.join(other, "beauty-caser-aug-s1"),
             os.path.join(grid_root, "beauty-caser-aug-s1"))
  with open(log, "a") as f:
    for cell, secs in [("ml-1m-sasrec-base-s0", 40),
                       ("beauty-caser-base-s0", 100),
                       ("beauty-caser-aug-s0", 300),
                       ("beauty-caser-aug-s1", 99999)]:
      f.write(json.dumps({"cell": cell, "seconds": secs}) + "\n")
  cells = grid.plan_cells(["ml-1m"], ["sasrec"],
                          ["base", "aug", "diff4rec"], [0, 1, 2])
  states = grid.inspect_grid(cells, grid_root)
  left = grid.estimate_left(states, grid_root)
  # Base s1, s2 take the base median (123 s); 6 augmented cells scaled.
  assert (left.measured, left.scaled, left.unknown) == (2, 6, 0)
  ratio = statistics.median([1000 / 180, 300 / 123])
  assert left.seconds == pytest.approx(2 * 123.0 + 6 * 123.0 * ratio)
  assert rp.main([f"--root={grid_root}", "--datasets=ml-1m",
                  "--models=sasrec", "--dry_run"]) == 0
  out = capsys.readouterr().out
  assert "for 8 of 8 cells:\n  2 as the median" in out
  assert "\n  6 augmented as their dataset and backbone's base median" in out
  assert "without an estimate" not in out


def test_share_augmentation_only_between_matching_siblings(grid_root):
  # Fixture: beauty sasrec aug s0 is finished; give it a (fake) copies file.
  src = os.path.join(grid_root, "beauty-sasrec-aug-s0",
                     pool_lib.AUGMENTED_FILE)
  with open(src, "wb") as f:
    f.write(b"TEST FIXTURE, not an npz")
  target = Cell("beauty", "sasrec", "diff4rec", 0)
  # The diff4rec sibling already has a config.json: left alone.
  assert runner.share_augmentation(target, grid_root, []) is None
  fresh = Cell("beauty", "sasrec", "diff4rec", 7)
  write_done(grid_root, Cell("beauty", "sasrec", "aug", 7), 0.06, 0.03)
  with open(os.path.join(grid_root, "beauty-sasrec-aug-s7",
                         pool_lib.AUGMENTED_FILE), "wb") as f:
    f.write(b"x")
  # Different settings than the sibling's: no sharing.
  assert runner.share_augmentation(fresh, grid_root,
                                   ["--config.augment.ratio=0.5"]) is None
  assert not os.path.exists(os.path.join(grid_root, fresh.name))
  assert runner.share_augmentation(fresh, grid_root,
                                   []) == "beauty-sasrec-aug-s7"
  with open(os.path.join(grid_root, fresh.name, pool_lib.AUGMENTED_FILE),
            "rb") as f:
    assert f.read() == b"x"
  # Base cells and other backbones never share.
  assert runner.share_augmentation(Cell("beauty", "sasrec", "base", 8),
                                   grid_root, []) is None
  assert runner.share_augmentation(Cell("beauty", "caser", "diff4rec", 7),
                                   grid_root, []) is None


def test_second_runner_on_a_busy_root_is_refused(tmp_path):
  root = str(tmp_path / "g")
  os.makedirs(root)
  with open(os.path.join(root, "runner.pid"), "w") as f:
    f.write(f"999999999 {os.getppid()}\n")     # a live process: our parent
  with pytest.raises(SystemExit, match="still run on this root"):
    runner.run_grid([Cell("ml-100k", "sasrec", "base", 0)], root, [],
                    dict(os.environ), prefix=[sys.executable, "-c", "pass"])


def test_curve_tables_compare_cells_at_shared_epochs():
  a = grid.CellState(grid.Cell("yelp", "sasrec", "base", 0), "/x", "partial",
                     curve=[(5, 0.01), (10, 0.02), (15, 0.03)])
  b = grid.CellState(grid.Cell("yelp", "sasrec", "aug", 0), "/y", "done",
                     curve=[(5, 0.015), (10, 0.025)])
  other_seed = grid.CellState(grid.Cell("yelp", "sasrec", "aug", 1), "/z",
                              "done", curve=[(5, 0.5)])
  lines = report.curve_tables([a, b, other_seed], ["yelp"], 0)
  text = "\n".join(lines)
  assert "| cell | status | ep 5 | ep 10 | best so far (epoch) |" in text
  assert "| `yelp-sasrec-base-s0` | partial | 0.0100 | 0.0200 | 0.0300 (15) |" \
      in text
  assert "| `yelp-sasrec-aug-s0` | done | 0.0150 | 0.0250 | 0.0250 (10) |" \
      in text
  assert "0.5000" not in text          # another seed is not mixed in
  assert report.curve_tables([a], ["beauty"], 0) == []


def test_paper_setting_cells_run_configs_paper():
  cell = grid.plan_cells(["beauty"], ["sasrec"], ["base"], [0], "paper")[0]
  cmd = grid.cell_command(cell, "/r", [])
  assert "--config=configs/paper.py:beauty" in cmd
  want = grid.expected_config(cell)
  assert want["train.loss"] == "bce" and want["model.hidden"] == 50
  assert want["data.name"] == "beauty"
  assert grid.config_arg("ml-1m", "paper") == "configs/paper.py:ml1m"
  with pytest.raises(ValueError, match="no paper setting"):
    grid.config_arg("ml-100k", "paper")


def test_control_cells_run_diff4rec_with_other_candidates():
  cell = grid.plan_cells(["beauty"], ["sasrec"], ["popular"], [1], "paper")[0]
  cmd = grid.cell_command(cell, "/r", [])
  assert "--config.mode=diff4rec" in cmd
  assert "--config.augment.candidates=popular" in cmd
  assert cmd[cmd.index("--config.mode=diff4rec") - 1].endswith(
      "beauty-sasrec-popular-s1")
  want = grid.expected_config(cell)
  assert want["mode"] == "diff4rec"
  assert want["augment.candidates"] == "popular"
  claims = [c[:3] for c in stats._claims("beauty", ["sasrec"],  # pylint: disable=protected-access
                                         ["base", "diff4rec", "popular"])]
  assert ("sasrec", "diff4rec", "popular") in claims


def test_duplicate_control_keeps_its_fields_under_the_chosen_overrides(
    tmp_path):
  """The duplicate control runs mode aug with copies equal to their
  originals even when the grid's overrides set ratio / reorder (the
  chosen augmentation); it is compared with aug."""
  cell = grid.plan_cells(["beauty"], ["sasrec"], ["duplicate"], [0],
                         "paper")[0]
  chosen = ["--config.augment.ratio=0.1", "--config.augment.reorder=True",
            "--config.augment.schedule=pop"]
  cmd = grid.cell_command(cell, "/r", chosen)
  assert "--config.mode=aug" in cmd and "--config.mode=duplicate" not in cmd
  # The trainer takes the last value of a repeated flag: the control's.
  assert cmd.index("--config.augment.ratio=0.0") > cmd.index(
      "--config.augment.ratio=0.1")
  assert cmd.index("--config.augment.reorder=False") > cmd.index(
      "--config.augment.reorder=True")
  want = grid.expected_config(cell, chosen)
  assert want["mode"] == "aug" and want["augment.ratio"] == 0.0
  assert want["augment.reorder"] is False
  assert want["augment.candidates"] == "uniform"
  assert want["augment.schedule"] == "pop"     # the rest of the choice stays
  # The other modes are untouched by the control fields.
  aug = grid.plan_cells(["beauty"], ["sasrec"], ["aug"], [0], "paper")[0]
  assert grid.expected_config(aug, chosen)["augment.ratio"] == 0.1
  assert grid.control_overrides("aug") == []
  claims = [c[:3] for c in stats._claims("beauty", ["sasrec"],  # pylint: disable=protected-access
                                         ["base", "aug", "duplicate"])]
  assert ("sasrec", "aug", "duplicate") in claims
  # A finished pair gets its lift in the report and the verdict table.
  root = str(tmp_path / "g")
  write_done(root, Cell("beauty", "sasrec", "aug", 0, "paper"), 0.02, 0.010)
  write_done(root, Cell("beauty", "sasrec", "duplicate", 0, "paper"), 0.03,
             0.015)
  states = grid.inspect_grid(grid.plan_cells(
      ["beauty"], ["sasrec"], ["aug", "duplicate"], [0], "paper"), root)
  assert [s.status for s in states] == ["done", "done"]
  assert grid.config_deviations(grid.expected_config(states[1].cell),
                                states[1].config) == []
  text = report.build_report(states, ["beauty"], ["sasrec"],
                             ["aug", "duplicate"], [0], root, "c", "m", "")
  assert "| SASRec duplicated originals (control) | 1 |" in text
  assert ("| SASRec | aug vs duplicate | test NDCG@10 | -33.3% (-0.0050) |"
          in text)


def test_generator_shared_across_seeds_with_a_fixed_generator_seed(tmp_path):
  """--config.generator.seed=0: seed 1's cell links seed 0's top-M file;
  without it (generator seed = run seed) nothing is shared."""
  root = str(tmp_path)
  fixed = ["--config.generator.seed=0"]
  c0, c1 = grid.plan_cells(["beauty"], ["sasrec"], ["diff4rec"], [0, 1],
                           "paper")
  src = os.path.join(root, c0.name)
  os.makedirs(os.path.join(src, "generator"))
  with open(os.path.join(src, runner.GENERATOR_TOPM), "w") as f:
    f.write("topm")
  cfg = {}
  for k, v in grid.expected_config(c0, fixed).items():
    node = cfg
    *head, last = k.split(".")
    for h in head:
      node = node.setdefault(h, {})
    node[last] = v
  with open(os.path.join(src, "config.json"), "w") as f:
    json.dump(cfg, f)
  assert runner.share_generator(c1, root, []) is None      # seeds differ
  assert runner.share_generator(c1, root, fixed) == c0.name
  with open(os.path.join(root, c1.name, runner.GENERATOR_TOPM)) as f:
    assert f.read() == "topm"
  ctl = grid.plan_cells(["beauty"], ["sasrec"], ["popular"], [1], "paper")[0]
  assert runner.share_generator(ctl, root, fixed) is None  # no generator


# ----------------------------------------------------------------------------
# Pieces the split into grid/runner/stats/report/paper made testable alone.
# ----------------------------------------------------------------------------
def test_paper_tables_keyed_as_grid_rows():
  # Table 2's Diff4Rec column is SASRec + Diff4Rec; the backbones are 'base'.
  assert paper.PAPER[("beauty", "sasrec", "diff4rec")] == (
      "Table 2/3", dict(zip(paper.TABLE2_COLS,
                            paper.TABLE2[("beauty", "diff4rec")])))
  assert paper.PAPER[("ml-1m", "caser", "base")][0] == "Table 2"
  assert paper.PAPER[("steam", "gru4rec", "diff4rec")] == (
      "Table 3", {"HR@10": 0.0691, "NDCG@10": 0.0342})
  assert paper.PAPER[("yelp", "sasrec", "aug")] == (
      "Table 4", {"HR@10": 0.0410, "NDCG@10": 0.0165})
  assert len(paper.PAPER) == 16 + 6 + 3
  assert paper.paper_value("ml-100k", "sasrec", "base", "HR@10") is None


def test_quality_table_prints_the_papers_rows_beside_a_run(tmp_path,
                                                           capsys):
  from benchmarks import quality_table  # pylint: disable=g-import-not-at-top
  assert quality_table.PAPER is paper.TABLE2      # one transcription
  cell = Cell("steam", "gru4rec", "base", 0)
  write_done(str(tmp_path), cell, 0.05, 0.02)
  quality_table.main([os.path.join(str(tmp_path), cell.name)])
  out = capsys.readouterr().out
  assert "| paper: gru4rec on steam | 0.0340 | 0.0561 | 0.0905 | 0.0126 | " \
      "0.0268 | 0.0213 |" in out
  assert "| paper: diff4rec on steam | 0.0575 |" in out
  assert "(steam-gru4rec-base-s0) | 0.0250 | 0.0500 |" in out


def test_load_config_is_the_cells_config_file():
  c = grid.load_config("ml-1m", "paper")
  assert (c.data.name, c.model.hidden, c.train.loss) == ("ml-1m", 50, "bce")
  assert grid.load_config("ml-100k").to_dict() == grid.load_config(
      "ml-100k", "strong").to_dict()
  flat = grid.flatten(grid.load_config("beauty").to_dict())
  exp = grid.expected_config(Cell("beauty", "sasrec", "base", 0))
  assert {k: v for k, v in exp.items()
          if k not in ("mode", "model.name", "seed")} == {
              k: json.loads(json.dumps(v)) for k, v in flat.items()
              if k not in ("mode", "model.name", "seed")}


def test_config_deviations_skip_the_resumable_fields():
  cell = Cell("beauty", "sasrec", "base", 0)
  exp = grid.expected_config(cell)
  run = _nested(exp)
  run["train"]["eval_length_buckets"] = [7]     # speed only: not a change
  run["data"]["dir"] = "/elsewhere"
  assert grid.config_deviations(exp, run) == []
  run["train"]["num_epochs"] = 3
  run["model"]["hidden"] = 8
  assert grid.config_deviations(exp, run) == ["model.hidden=8",
                                              "train.num_epochs=3"]
  assert grid.config_deviations(exp, None) == []
  # A base run does not use the augmentation and generator fields; an
  # augmented run does.
  run = _nested(exp)
  run["augment"]["ratio"] = 0.5
  run["generator"]["epochs"] = 1
  assert grid.config_deviations(exp, run) == []
  aug = grid.expected_config(Cell("beauty", "sasrec", "aug", 0))
  run = _nested(aug)
  run["augment"]["ratio"] = 0.5
  assert grid.config_deviations(aug, run) == ["augment.ratio=0.5"]


def test_read_curve_keeps_the_last_record_of_a_redone_epoch(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  with open(path, "w") as f:
    f.write(json.dumps({"epoch": 2, "valid/NDCG@10": 0.1}) + "\n")
    f.write(json.dumps({"epoch": 4, "valid/NDCG@10": 0.2}) + "\n")
    f.write(json.dumps({"epoch": 3, "train_loss": 1.0}) + "\n")
    f.write(json.dumps({"epoch": 4, "valid/NDCG@10": 0.25}) + "\n")  # resumed
    f.write(json.dumps({"epoch": 4, "final": True, "valid/NDCG@10": 9}) + "\n")
    f.write('{"epoch": 6, "valid/NDC')                     # cut by a kill
  assert grid.read_curve(path) == [(2, 0.1), (4, 0.25)]
  assert grid.read_curve(str(tmp_path / "missing.jsonl")) == []


def test_last_error_prefers_the_exception_line(tmp_path):
  log = tmp_path / "cell.log"
  log.write_text("old attempt: KeyError: not this one\n")
  start = log.stat().st_size
  with open(log, "a") as f:
    f.write("Traceback (most recent call last):\n  File x\n"
            "ValueError: config.train.lr: must be > 0\n"
            "I1207 exiting with an error code\n")
  assert runner._last_error(str(log), start) == (  # pylint: disable=protected-access
      "ValueError: config.train.lr: must be > 0")
  with open(log, "a") as f:
    f.write("plain last line\n")
  assert runner._last_error(str(log), log.stat().st_size - 16) == (  # pylint: disable=protected-access
      "plain last line")


def test_claim_labels_and_magnitudes():
  label = stats._claim_label  # pylint: disable=protected-access
  assert label([None, None]) == "not run"
  assert label(["up", "up"]) == "holds"
  assert label(["up", "flat"]).startswith("partly holds")
  assert label(["up", "down"]).startswith("mixed (one metric up")
  assert label(["down", "flat"]).startswith("does not hold")
  assert label(["flat", "flat"]).startswith("not supported")
  assert label(["up?", "up?"]).startswith("holds in direction on one seed")
  assert label(["up?", "down?"]).startswith("mixed on one seed")
  magnitude = report._magnitude  # pylint: disable=protected-access
  assert magnitude(0.05, 0.3) == "our gain is less than half the paper's"
  assert magnitude(-0.01, 0.3) == "the paper's gain does not appear"
  assert magnitude(0.3, 0.3) == "our gain is of the paper's size"
  assert magnitude(0.5, 0.3) == "our gain is larger than the paper's"
  assert magnitude(None, 0.3) == magnitude(0.1, -0.2) == ""


def test_report_names_cells_that_shared_augmented_copies(grid_root):
  with open(os.path.join(grid_root, "grid_log.jsonl"), "a") as f:
    f.write(json.dumps({"cell": "beauty-sasrec-diff4rec-s0",
                        "augmented_from": "beauty-sasrec-aug-s0"}) + "\n")
  log = grid.read_grid_log(grid_root)
  st = grid.inspect_cell(Cell("beauty", "sasrec", "diff4rec", 0), grid_root,
                         log)
  assert st.augmented_from == "beauty-sasrec-aug-s0"
  assert st.last_attempt is None          # a sharing record is no attempt
  states = grid.inspect_grid(default_cells(), grid_root)
  text = report.build_report(states, ["beauty"], ["sasrec"], grid.MODES,
                             [0], grid_root, "cmd", "m", "")
  assert ("- Shared augmentation: " in text and
          "`beauty-sasrec-diff4rec-s0` (from `beauty-sasrec-aug-s0`)" in text)


def test_runner_logs_the_augmented_copies_a_cell_reuses(tmp_path, capsys):
  fake = tmp_path / "fake_main.py"
  fake.write_text(FAKE_TRAINER)
  root = str(tmp_path / "g")
  aug, d4r = grid.plan_cells(["ml-100k"], ["sasrec"], ["aug", "diff4rec"],
                             [0])
  src = os.path.join(root, aug.name)
  os.makedirs(os.path.join(src, "generator"))
  with open(os.path.join(src, "config.json"), "w") as f:
    json.dump(_nested(grid.expected_config(aug)), f)
  for name in (pool_lib.AUGMENTED_FILE, runner.GENERATOR_TOPM):
    with open(os.path.join(src, name), "w") as f:
      f.write("TEST FIXTURE")
  recs = runner.run_grid([d4r], root, [], dict(os.environ),
                         prefix=[sys.executable, str(fake)])
  assert [r["cell"] for r in recs] == [d4r.name] and recs[0]["finished"]
  assert f"reusing the augmented copies of {aug.name}" in (
      capsys.readouterr().out)
  log = grid.read_grid_log(root)
  assert log[("augmented_from", d4r.name)]["augmented_from"] == aug.name
  assert ("generator_from", d4r.name) not in log
  wd = os.path.join(root, d4r.name)
  assert os.path.exists(os.path.join(wd, pool_lib.AUGMENTED_FILE))
  assert not os.path.exists(os.path.join(wd, runner.GENERATOR_TOPM))


def test_verdict_table_from_finished_cells_and_readme_block(grid_root,
                                                            tmp_path):
  text = verdicts.table({"strong": grid_root})
  lines = text.splitlines()
  assert all(l.startswith("| strong (CE) |") for l in lines[2:])
  row = next(l for l in lines if "| beauty | Diff4Rec improves SASRec |" in l)
  # Paired seeds 0 and 1 of the fixture: diff4rec NDCG@10 0.034 / 0.035
  # against base 0.030 / 0.032: +11.3%.
  assert "+11.3% (2 seeds)" in row and "+37.6% / +40.6%" in row
  assert "not run" not in row
  assert "| yelp | Diff4Rec improves SASRec | not run | — |" in text
  assert "control" not in text     # the strong grid has no control cells
  readme = tmp_path / "README.md"
  readme.write_text("intro\n<!-- verdicts -->\nold table\n<!-- /verdicts -->"
                    "\noutro\n")
  assert verdicts.main([f"--strong_root={grid_root}", "--paper_root=",
                        f"--readme={readme}"]) == 0
  new = readme.read_text()
  assert new.startswith("intro\n<!-- verdicts -->\n| setting |")
  assert "old table" not in new
  assert new.endswith("<!-- /verdicts -->\noutro\n")
  readme.write_text("no markers\n")
  with pytest.raises(SystemExit, match="expected a line <!-- verdicts -->"):
    verdicts.main([f"--strong_root={grid_root}", f"--readme={readme}"])


def test_report_names_cells_cut_by_the_epoch_cap(tmp_path):
  root = str(tmp_path / "g")
  cut = Cell("beauty", "sasrec", "aug", 0)
  stopped = Cell("beauty", "sasrec", "aug", 1)
  early = Cell("beauty", "sasrec", "base", 0)
  for c in (cut, stopped, early):
    write_done(root, c, 0.05, 0.02, **{"train.num_epochs": 200,
                                       "train.eval_every": 5,
                                       "train.patience": 5})

  def set_epochs(cell, best, ran):
    path = os.path.join(root, cell.name, "results.json")
    with open(path) as f:
      res = json.load(f)
    res.update(best_epoch=best, epochs_run=ran)
    with open(path, "w") as f:
      json.dump(res, f)
    return res

  # Best at 180: the last five evaluations (185..200) could not all fail.
  assert grid.cut_by_cap(set_epochs(cut, 180, 200))
  # Best at 175: five evaluations without improvement end at 200 anyway.
  assert not grid.cut_by_cap(set_epochs(stopped, 175, 200))
  assert not grid.cut_by_cap(set_epochs(early, 100, 125))
  # A cap off the evaluation grid is evaluated too (loop.py): with cap 202
  # and best 180, the evaluations 185, 190, 195, 200 and 202 all failed.
  res = set_epochs(early, 100, 125)
  res.update(best_epoch=180, epochs_run=202)
  res["config"]["train"].update(num_epochs=202)
  assert not grid.cut_by_cap(res)
  res.update(best_epoch=185)         # four evaluations after it: cut
  assert grid.cut_by_cap(res)
  set_epochs(early, 100, 125)
  states = grid.inspect_grid([early, cut, stopped], root)
  assert "cut by the epoch cap" in states[1].detail
  assert "cut by the epoch cap" not in states[0].detail + states[2].detail
  text = report.build_report(states, ["beauty"], ["sasrec"], ["base", "aug"],
                             [0, 1], root, "cmd", "m", "")
  line = next(l for l in text.splitlines()
              if l.startswith("- Cut by the epoch cap"))
  assert line.endswith(": SASRec +Diff4Rec w/o cur (aug): seed 0 "
                       "(200 epochs).")
  # The README's verdict table marks the claim whose rows hold such a cell.
  (claim, label, _, _), = verdicts.rows("strong", root, "beauty", ("sasrec",),
                                        ("base", "aug"))
  assert claim == "augmentation without curriculum beats base"
  assert label.endswith(" (epoch cap: a cell stopped while improving)")


def test_a_linked_cell_takes_its_run_record_from_the_other_root(tmp_path):
  other, root = str(tmp_path / "sampled"), str(tmp_path / "strong")
  cell = Cell("beauty", "sasrec", "base", 0)
  write_done(other, cell, 0.05, 0.03)
  _write_jsonl(os.path.join(other, "grid_log.jsonl"), [
      {"cell": cell.name, "rc": 0, "finished": True, "seconds": 60.0,
       "runner": "python benchmarks/reproduce.py --root=sampled"}])
  os.makedirs(root)
  os.symlink(os.path.join(other, cell.name), os.path.join(root, cell.name))
  st, = grid.inspect_grid([cell], root)
  assert st.status == "done"
  assert st.last_attempt["runner"].endswith("--root=sampled")
  assert f"(workdir linked to {os.path.realpath(other)}" in st.detail
  text = report.build_report([st], ["beauty"], ["sasrec"], ["base"], [0],
                             root, "cmd", "m", "")
  assert "  python benchmarks/reproduce.py --root=sampled" in text


def test_cells_get_a_persistent_compilation_cache(tmp_path):
  root = str(tmp_path / "g")
  args = rp.parse_args([f"--root={root}"])
  env = rp.cell_env(args, {"PATH": "/bin"})
  assert env["JAX_COMPILATION_CACHE_DIR"] == os.path.join(root, "jit_cache")
  assert env["PATH"] == "/bin"
  # The caller's cache wins over the default; --jit_cache over both.
  env = rp.cell_env(args, {"JAX_COMPILATION_CACHE_DIR": "/c"})
  assert env["JAX_COMPILATION_CACHE_DIR"] == "/c"
  args = rp.parse_args([f"--root={root}", "--jit_cache=rel",
                        "--data_dir=d"])
  env = rp.cell_env(args, {"JAX_COMPILATION_CACHE_DIR": "/c"})
  assert env["JAX_COMPILATION_CACHE_DIR"] == os.path.abspath("rel")
  assert env["DIFF4REC_DATA_DIR"] == os.path.abspath("d")
  args = rp.parse_args([f"--root={root}", "--jit_cache=none"])
  assert "JAX_COMPILATION_CACHE_DIR" not in rp.cell_env(
      args, {"JAX_COMPILATION_CACHE_DIR": "/c"})
  # The cache folder under the root is not taken for a cell.
  os.makedirs(os.path.join(root, "jit_cache"))
  cell = Cell("beauty", "sasrec", "aug", 0)
  assert runner.share_generator(cell, root, []) is None


def test_the_trainer_takes_a_control_cells_own_fields(tmp_path, capsys):
  """The command line a duplicate cell runs, parsed by the trainer's own
  flag parser: the control's fields, given last, win over the overrides."""
  chosen = ("--config.augment.ratio=0.1 --config.augment.reorder=True "
            "--config.augment.min_replaced=1")
  args = rp.parse_args([f"--root={tmp_path}", "--setting=paper",
                        "--datasets=beauty", "--modes=aug,duplicate",
                        f"--overrides={chosen}"])
  note = capsys.readouterr().out
  assert ("note: the duplicate control cells keep their own augment."
          "candidates, augment.min_replaced, augment.ratio, augment.reorder "
          f"over {chosen}") in note
  cell = grid.plan_cells(["beauty"], ["sasrec"], ["duplicate"], [0],
                         "paper")[0]
  argv = grid.cell_command(cell, str(tmp_path), args.overrides,
                           prefix=["main"])
  script = (
      "import json, sys\n"
      "from diff4rec_jax import main as m\n"
      "m._parse_flags(sys.argv[1:])\n"
      "c = m._CONFIG.value\n"
      "print(json.dumps([c.mode, c.augment.candidates, c.augment.ratio, "
      "c.augment.reorder, c.augment.min_replaced]))\n")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  r = subprocess.run([sys.executable, "-c", script, *argv], cwd=repo,
                     capture_output=True, text=True, check=True)
  assert json.loads(r.stdout.splitlines()[-1]) == ["aug", "uniform", 0.0,
                                                   False, 0]


def test_report_puts_the_generator_beside_the_base_rows(grid_root):
  """Each dataset's verdict names its generator's validation ranking (from
  a cell's generator_metrics.jsonl) and its ratio to each base row's mean
  validation NDCG@10; a dataset without one gets no such line."""
  gen = os.path.join(grid_root, "beauty-sasrec-aug-s0", "generator")
  os.makedirs(gen)
  _write_jsonl(os.path.join(gen, "generator_metrics.jsonl"), [
      {"kind": "train", "epoch": 1, "loss": 9.0},
      {"kind": "eval", "split": "valid", "epoch": 10,
       "generator": {"HR@10": 0.02, "NDCG@10": 0.011},
       "vae": {"HR@10": 0.03, "NDCG@10": 0.012}},
      {"kind": "eval", "split": "valid", "epoch": 10, "final": True,
       "generator": {"HR@10": 0.07, "NDCG@10": 0.0682},
       "vae": {"HR@10": 0.08, "NDCG@10": 0.0341}},
  ])
  states = grid.inspect_grid(default_cells(), grid_root)
  text = report.build_report(states, grid.DEFAULT_DATASETS, grid.MODELS,
                             grid.MODES, grid.DEFAULT_SEEDS, grid_root,
                             "python x", "TEST CPU", "")
  lines = [l for l in text.splitlines()
           if l.startswith("- Generator as a recommender")]
  base_valid = statistics.fmean(n * 1.1 for n in (0.030, 0.032, 0.031))
  assert lines == [
      "- Generator as a recommender (its final validation ranking, history "
      "masked, from `beauty-sasrec-aug-s0`'s generator_metrics.jsonl): "
      "HR@10 0.0700 / NDCG@10 0.0682 (the VAE alone 0.0800 / 0.0341); "
      f"against the base rows' validation NDCG@10: SASRec base "
      f"{base_valid:.4f} (generator x{0.0682 / base_valid:.2f})."]


def test_report_says_how_many_copies_bring_in_nothing_new(grid_root):
  """The share of copies at similarity 1 (reordered originals) of the first
  augmented cell with an augmented.npz; none for a dataset without one."""
  sim = np.array([[1.0, 0.97, 1.0 - 1e-8, 0.5]], np.float32)
  np.savez(os.path.join(grid_root, "beauty-sasrec-diff4rec-s0",
                        "augmented.npz"), sim=sim)
  states = grid.inspect_grid(default_cells(), grid_root)
  text = report.build_report(states, grid.DEFAULT_DATASETS, grid.MODELS,
                             grid.MODES, grid.DEFAULT_SEEDS, grid_root,
                             "python x", "TEST CPU", "")
  lines = [l for l in text.splitlines() if l.startswith("- Copies (")]
  ratio = grid.expected_config(Cell("beauty", "sasrec", "diff4rec", 0))[
      "augment.ratio"]
  assert lines == [
      f"- Copies (`beauty-sasrec-diff4rec-s0`'s augmented.npz, ratio "
      f"{ratio}): 50.0% of them bring in no new item (similarity 1: "
      "reordered originals, the copies an easy-first curriculum admits "
      "first)."]
