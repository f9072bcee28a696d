"""Tests for benchmarks/grid_status.py: running cells' progress from the
runner's logs and the grid roots' counts (hand-made files in tmp_path)."""

import json
import os
import time

from benchmarks import grid_status

LOG = """\
==== 2026-12-07T12:00:00 python -m diff4rec_jax.main --workdir=old
I1207 12:00:05.0 1 loop.py:347] epoch 9/200  loss 2.0  100 seq/s  50.0s  eta 9h00m00s
==== 2026-12-07T13:41:51 python -m diff4rec_jax.main --workdir=x
I1207 13:41:53.0 1 train.py:285] phase: generator
I1207 13:42:10.0 1 loop.py:347] generator epoch 2/10  loss 160.1  900 seq/s  8.0s  eta 0h01m04s
I1207 13:43:10.0 1 train.py:362] phase: recommender (sasrec, aug mode)
I1207 13:48:31.3 1 loop.py:382] epoch 20 valid HR@5 0.0096 HR@10 0.0173 NDCG@5 0.0061 NDCG@10 0.0085 NDCG@20 0.0112 MRR 0.0086
I1207 13:48:45.8 1 loop.py:347] epoch 21/200  loss 1.0491  2920 seq/s  13.8s  eta 0h51m05s
"""


def _cell(root, name, done):
  """A finished cell (results.json) or a partial one (config.json only)."""
  os.makedirs(os.path.join(root, name))
  res = {"valid": {"NDCG@10": 0.02}, "test": {"NDCG@10": 0.01}}
  with open(os.path.join(root, name,
                         "results.json" if done else "config.json"), "w") as f:
    json.dump(res if done else {"mode": "aug"}, f)


def test_status_of_running_cells_and_roots(tmp_path):
  runs = str(tmp_path)
  paper = os.path.join(runs, "paper")
  _cell(paper, "beauty-sasrec-base-s0", True)
  _cell(paper, "beauty-sasrec-aug-s0", False)
  os.makedirs(os.path.join(paper, "jit_cache"))       # not a cell
  os.makedirs(os.path.join(paper, "beauty-sasrec-uniform-s1"))  # empty: todo
  open(os.path.join(paper, "grid_log.jsonl"), "w").close()
  with open(os.path.join(paper, "beauty-sasrec-aug-s0.log"), "w") as f:
    f.write(LOG)
  tune = os.path.join(runs, "tune", "v1")
  _cell(tune, "beauty-sasrec-aug-s0", True)
  open(os.path.join(tune, "grid_log.jsonl"), "w").close()
  deep = os.path.join(runs, "a", "b", "c")             # deeper than 2
  os.makedirs(deep)
  open(os.path.join(deep, "grid_log.jsonl"), "w").close()
  ps = ["bash benchmarks/paper_queue.sh /work/runs",
        "python -m diff4rec_jax.main --config=configs/paper.py:beauty "
        f"--workdir={paper}/beauty-sasrec-aug-s0 --config.mode=aug",
        f"python -m diff4rec_jax.main --workdir={runs}/strong/x-sasrec-"
        "base-s0"]
  text = grid_status.status(runs, ps)
  assert text.splitlines() == [
      "running:",
      "  paper/beauty-sasrec-aug-s0: phase recommender (sasrec, aug mode); "
      "epoch 21/200 (13.8 s, eta to the cap 0h51m05s); valid NDCG@10 "
      "0.0085 at epoch 20",
      "  strong/x-sasrec-base-s0: no runner log (started outside the grid "
      "runner?)",
      "grid roots (finished / partial cells):",
      "  paper: 1 / 1",
      "  tune/v1: 1 / 0",
  ]


def test_a_new_phase_forgets_the_last_ones_epochs(tmp_path):
  wd = str(tmp_path / "c-sasrec-aug-s0")
  with open(wd + ".log", "w") as f:
    f.write(LOG.split("phase: recommender")[0] + "phase: generator\n")
  assert grid_status.progress(wd) == "phase generator"
  assert grid_status.status(str(tmp_path), []).splitlines()[1] == "  nothing"


def test_status_lists_the_packs_for_the_next_machine(tmp_path):
  from benchmarks import archive  # pylint: disable=g-import-not-at-top
  runs, inflight = tmp_path / "runs", tmp_path / "inflight"
  _cell(str(runs / "paper"), "yelp-sasrec-aug-s0", done=False)
  (runs / "paper" / "grid_log.jsonl").write_text("")
  with open(runs / "paper" / "yelp-sasrec-aug-s0" / "augmented.npz",
            "wb") as f:
    f.write(os.urandom(3 * 2**20))            # 3 MB that do not compress
  archive.carry(str(runs), str(inflight))
  listing = inflight / "paper" / ("yelp-sasrec-aug-s0" + archive.PACK_SUFFIX)
  os.utime(listing, (1000.0, 1000.0))
  made = time.strftime("%H:%M", time.localtime(1000.0))
  assert grid_status.packs(str(inflight), now=1000.0 + 25 * 60) == [
      f"paper/yelp-sasrec-aug-s0: as of {made} (25 min ago), 3 MB"]
  text = grid_status.status(str(runs), [], str(inflight))
  assert text.splitlines()[-2] == f"packed for the next machine ({inflight}):"
  assert text.splitlines()[-1].startswith("  paper/yelp-sasrec-aug-s0: as of")
  listing.write_text("{")
  assert grid_status.packs(str(inflight)) == [
      "paper/yelp-sasrec-aug-s0: unreadable listing"]
