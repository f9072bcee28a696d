"""Tests for the background queues' dry run (benchmarks/strong_queue.sh and
benchmarks/paper_queue.sh with DRY_RUN=1): every grid goes through
`reproduce.py --dry_run`, and nothing is created or linked under RUNS.
`python` is a stub on PATH that records its arguments, so no cell runs."""

import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUB = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
case "$*" in *tune_summary.py*--choose*) echo "--config.augment.ratio=0.1";;
esac
exit 0
"""


def _run(tmp_path, script, runs, dry):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  (bin_dir / "python").write_text(STUB)
  (bin_dir / "python").chmod(0o755)
  calls = tmp_path / "calls.txt"
  calls.write_text("")
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
             CALLS=str(calls))
  env.pop("DRY_RUN", None)
  if dry:
    env["DRY_RUN"] = "1"
  out = subprocess.run(
      ["bash", os.path.join(REPO, "benchmarks", script), str(runs)],
      env=env, capture_output=True, text=True, timeout=60)
  assert out.returncode == 0, out.stdout + out.stderr
  return out.stdout, [l for l in calls.read_text().splitlines() if l]


def _tuned_generator(runs):
  """A top-M file of the tuning, which the queues link into their cells."""
  d = runs / "tune_beauty" / "v" / "beauty-sasrec-aug-s0" / "generator"
  d.mkdir(parents=True)
  (d / "generator_topm.npz").write_text("")
  (d / "generator_metrics.jsonl").write_text('{"kind": "eval"}\n')


def _linked_generator(cell_dir, runs):
  """The cell got the tuning's top-M file as a hard link and its metrics
  as a copy (a retraining cell rewrites its own metrics file)."""
  src = runs / "tune_beauty" / "v" / "beauty-sasrec-aug-s0" / "generator"
  dst = cell_dir / "generator"
  assert os.path.samefile(src / "generator_topm.npz",
                          dst / "generator_topm.npz")
  assert (dst / "generator_metrics.jsonl").read_text() == (
      src / "generator_metrics.jsonl").read_text()
  assert not os.path.samefile(src / "generator_metrics.jsonl",
                              dst / "generator_metrics.jsonl")


def _files(root):
  return sorted(os.path.relpath(os.path.join(d, n), root)
                for d, dirs, files in os.walk(root) for n in dirs + files)


@pytest.mark.parametrize("dry", [True, False])
def test_strong_queue_dry_run_only_estimates(tmp_path, dry):
  runs = tmp_path / "runs"
  _tuned_generator(runs)
  before = _files(runs)
  _, calls = _run(tmp_path, "strong_queue.sh", runs, dry)
  grids = [c for c in calls if "reproduce.py" in c]
  # 6 strong grids and 3 sampled-vs-full-CE check cells.
  assert len(grids) == 9
  # Beauty and Yelp train with 4,096 popularity negatives (session 21).
  for g in grids[:6]:
    if "--datasets=ml-1m" not in g:
      assert "--config.train.num_negatives=4096" in g, g
  assert all(("--dry_run" in c) == dry for c in grids)
  if dry:
    assert calls == grids and _files(runs) == before
  else:
    _linked_generator(runs / "strong" / "beauty-sasrec-aug-s0", runs)


def test_paper_queue_dry_run_needs_a_started_grid(tmp_path):
  runs = tmp_path / "runs"
  runs.mkdir()
  out, calls = _run(tmp_path, "paper_queue.sh", runs, True)
  assert "the grid has not started" in out
  assert calls == [] and _files(runs) == []


@pytest.mark.parametrize("dry", [True, False])
def test_paper_queue_dry_run_uses_the_grids_choice(tmp_path, dry):
  runs = tmp_path / "runs"
  (runs / "paper").mkdir(parents=True)
  used = runs / "paper" / "augmentation_overrides.txt"
  used.write_text("--config.augment.ratio=0.1")
  _tuned_generator(runs)
  before = _files(runs)
  _, calls = _run(tmp_path, "paper_queue.sh", runs, dry)
  grids = [c for c in calls
           if "reproduce.py" in c and "--root=" + str(runs / "paper") in c]
  assert len(grids) == 10
  assert "--datasets=yelp,beauty --models=sasrec --modes=base " in grids[0]
  assert "--modes=duplicate --seeds=0 " in grids[1]
  assert ("--datasets=yelp,beauty --models=sasrec "
          "--modes=aug,diff4rec,uniform,duplicate --seeds=1 ") in grids[2]
  # The blocks do not overlap (DRY_RUN's hours left add up), and they make
  # the whole paper grid: 63 cells.
  cells = []
  for g in grids:
    arg = dict(a.split("=", 1) for a in g.split() if a.startswith("--")
               and "=" in a and a.split("=")[0] in ("--datasets", "--models",
                                                    "--modes", "--seeds"))
    cells += [(d, m, mo, sd) for d in arg["--datasets"].split(",")
              for m in arg["--models"].split(",")
              for mo in arg["--modes"].split(",")
              for sd in arg["--seeds"].split(",")]
  assert len(cells) == len(set(cells)) == 63
  assert all(("--dry_run" in c) == dry for c in grids)
  for g in grids:
    over = "--config.generator.seed=0 --config.augment.ratio=0.1"
    assert (over in g) == ("--modes=base " not in g), g
  # A started grid's choice is frozen: not the tuning's grids, not --choose.
  assert calls == grids
  if dry:
    assert _files(runs) == before     # no file written
  else:
    _linked_generator(runs / "paper" / "beauty-sasrec-aug-s0", runs)


def test_paper_queue_tunes_and_chooses_before_the_grid_starts(tmp_path):
  runs = tmp_path / "runs"
  runs.mkdir()
  _, calls = _run(tmp_path, "paper_queue.sh", runs, False)
  tuning = [c for c in calls if "--root=" + str(runs / "tune_beauty") in c]
  choose = [i for i, c in enumerate(calls) if "tune_summary.py" in c]
  assert len(tuning) == 7 and len(choose) == 1
  assert calls.index(tuning[-1]) < choose[0]
  assert (runs / "paper" / "augmentation_overrides.txt").read_text() == (
      "--config.augment.ratio=0.1")
  assert len(calls) == 7 + 1 + 10


def test_experiments_sh_on_a_machine_without_the_requirements(tmp_path):
  """A fresh machine lacks jax: experiments.sh says what to install and
  starts nothing (no worktree, no RUNS)."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "python").write_text(
      "#!/usr/bin/env bash\n"
      "echo \"ModuleNotFoundError: No module named 'jax'\" >&2; exit 1\n")
  (bin_dir / "python").chmod(0o755)
  runs = tmp_path / "runs"
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
             RUNS=str(runs), DIFF4REC_DATA_DIR=str(tmp_path))
  out = subprocess.run(
      ["bash", os.path.join(REPO, "benchmarks", "experiments.sh")],
      env=env, capture_output=True, text=True, timeout=60)
  assert out.returncode == 1
  assert "pip install -r" in out.stdout and "requirements.txt" in out.stdout
  assert not runs.exists()


def test_pause_runs_stops_the_queues_and_their_cells(tmp_path):
  """A cell runs in a session of its own (runner.py): stopping the queue's
  group alone would leave it running."""
  runs = str(tmp_path / "runs")
  fake = tmp_path / "diff4rec_jax.main"
  fake.write_text("sleep 60\n")
  cell = subprocess.Popen(
      ["bash", str(fake), "--config=x", f"--workdir={runs}/paper/c-s0"],
      start_new_session=True)
  # Its argv must read like a trainer's for pgrep: bash FILE ARGS shows
  # as 'bash .../diff4rec_jax.main --config=x --workdir=...'.
  other = subprocess.Popen(["sleep", "60"], start_new_session=True)

  def state(pid, want=None):
    """The process state letter, after up to 5 s for `want`."""
    import time  # pylint: disable=g-import-not-at-top
    for _ in range(50):
      with open(f"/proc/{pid}/stat") as f:
        s = f.read().rsplit(")", 1)[1].split()[0]
      if want is None or s == want:
        break
      time.sleep(0.1)
    return s
  script = os.path.join(REPO, "benchmarks", "pause_runs.sh")
  try:
    out = subprocess.run(["bash", script, "stop", runs], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "1 process groups" in out.stdout
    assert state(cell.pid, "T") == "T" and state(other.pid) != "T"
    subprocess.run(["bash", script, "cont", runs], check=True, timeout=30,
                   capture_output=True)
    assert state(cell.pid, "S") != "T"
  finally:
    for p in (cell, other):
      p.kill()
      p.wait()
