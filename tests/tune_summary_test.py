"""Tests for benchmarks/tune_summary.py: the choice of the paper setting's
augmentation from the tuning variants' validation scores."""

import json
import subprocess
import sys

from conftest import REPO
from benchmarks import tune_summary


def _cell(root, variant, seed, ndcg, best_epoch=5, epochs_run=30):
  d = root / variant / f"beauty-sasrec-aug-s{seed}"
  d.mkdir(parents=True)
  (d / "results.json").write_text(json.dumps({
      "valid": {"NDCG@10": ndcg, "HR@10": 2 * ndcg},
      "test": {"NDCG@10": ndcg, "HR@10": 2 * ndcg},
      "best_epoch": best_epoch, "epochs_run": epochs_run,
      "config": {"train": {"num_epochs": 200, "eval_every": 5,
                           "patience": 5}}}))


def _variants(root, rows):
  (root / "variants.tsv").write_text(
      "".join("\t".join(r) + "\n" for r in rows))


ROWS = [("paper", "aug", "", "method"),
        ("noreorder", "aug", "--config.augment.reorder=False", "method"),
        ("duplicate", "aug", "--config.augment.ratio=0.0", "control"),
        ("paper_e400", "aug", "--config.train.num_epochs=400", "check")]


def test_choose_takes_the_best_method_never_a_control(tmp_path):
  _variants(tmp_path, ROWS)
  _cell(tmp_path, "paper", 0, 0.010)
  _cell(tmp_path, "noreorder", 0, 0.012)
  _cell(tmp_path, "noreorder", 1, 0.014)
  _cell(tmp_path, "duplicate", 0, 0.050)      # best, but a control
  _cell(tmp_path, "paper_e400", 0, 0.060)     # a budget check, not a choice
  found = tune_summary.cells(str(tmp_path))
  variants = tune_summary.read_variants(str(tmp_path / "variants.tsv"))
  assert variants[0] == ("paper", "aug", "", "method")   # empty overrides
  assert tune_summary.choose(found, variants) == (
      "noreorder", "--config.augment.reorder=False")


def test_no_choice_while_a_method_is_unfinished(tmp_path):
  _variants(tmp_path, ROWS)
  _cell(tmp_path, "paper", 0, 0.010)
  _cell(tmp_path, "duplicate", 0, 0.050)
  cmd = [sys.executable, "benchmarks/tune_summary.py", str(tmp_path),
         "--choose"]
  r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
  assert r.returncode == 3 and r.stdout == ""
  assert "noreorder" in r.stderr
  _cell(tmp_path, "noreorder", 0, 0.009)
  r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
  # The unfinished 'check' variant does not hold the choice back.
  assert r.returncode == 0 and r.stdout == "\n"    # configs/paper.py as it is
  assert "`paper`" in (tmp_path / "CHOICE.md").read_text()


def test_the_choice_doubles_the_cap_when_the_chosen_run_hit_it(tmp_path):
  _variants(tmp_path, ROWS)
  _cell(tmp_path, "paper", 0, 0.010)
  # The best method ran to the 200-epoch cap, its best at 195: cut.
  _cell(tmp_path, "noreorder", 0, 0.012, best_epoch=195, epochs_run=200)
  cmd = [sys.executable, "benchmarks/tune_summary.py", str(tmp_path),
         "--choose"]
  r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
  assert r.returncode == 0, r.stderr
  assert r.stdout == ("--config.augment.reorder=False "
                      "--config.train.num_epochs=400\n")
  assert "Budget: `--config.train.num_epochs=400`" in (
      tmp_path / "CHOICE.md").read_text()
  # Early-stopped (best epoch 5, stopped at 30): the configs' budget.
  assert tune_summary.budget_override([json.loads(
      (tmp_path / "paper" / "beauty-sasrec-aug-s0" / "results.json")
      .read_text())]) == ""
