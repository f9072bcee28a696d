"""Tests for benchmarks/rerun_compare.py: a frozen report's Cells table
beside reruns (hand-made report lines and made-up finished cells)."""

from benchmarks import grid
from benchmarks import rerun_compare
from reproduce_test import write_done

FROZEN = """\
| cell | status | details | settings differing from the config file |
|---|---|---|---|
| `yelp-sasrec-base-s0` | finished | best epoch 120 of 145, train 19.4 min, test NDCG@10 0.0225 | none |
| `yelp-sasrec-base-s1` | finished | best epoch 175 of 200, train 16.0 min, test NDCG@10 0.0247 | none |
| `yelp-sasrec-base-s2` | finished | best epoch 90 of 115, train 1.2 h, test NDCG@10 0.0244, cut by the epoch cap while still improving (workdir linked to /x) | none |
| `yelp-sasrec-aug-s0` | finished | best epoch 120 of 145, train 52.2 min, test NDCG@10 0.0268 | generator.seed=0 |
| `yelp-sasrec-aug-s1` | not run | — | — |
"""


def test_reruns_beside_the_frozen_cells(tmp_path):
  path = tmp_path / "frozen.md"
  path.write_text(FROZEN)
  frozen = rerun_compare.read_frozen(str(path))
  assert frozen == {"yelp-sasrec-base-s0": (0.0225, 120, "none"),
                    "yelp-sasrec-base-s1": (0.0247, 175, "none"),
                    "yelp-sasrec-base-s2": (0.0244, 90, "none"),
                    "yelp-sasrec-aug-s0": (0.0268, 120, "generator.seed=0")}
  root = str(tmp_path / "paper")
  cell = lambda mode, seed: grid.Cell("yelp", "sasrec", mode, seed, "paper")
  write_done(root, cell("base", 0), 0.04, 0.0211)
  write_done(root, cell("base", 1), 0.04, 0.0250)
  # Rerun with other settings: shown, not counted in the summary.
  write_done(root, cell("aug", 0), 0.04, 0.0300, **{"train.lr": 0.5})
  text = rerun_compare.compare(frozen, root, "paper")
  lines = text.splitlines()
  assert lines[2] == ("| `yelp-sasrec-base-s0` | 0.0225 (120) | 0.0211 (10) "
                      "| -0.0014 | yes |")
  assert "| `yelp-sasrec-aug-s0` | 0.0268 (120) | 0.0300 (10) | +0.0032 | " \
         "no: generator.seed=0 / " in text
  assert "yelp-sasrec-base-s2" not in text          # not rerun yet
  # |−0.0014| and |+0.0003|: median 0.00085; base seed std of the frozen
  # figures 0.0225, 0.0247, 0.0244.
  assert lines[-1].startswith("2 cells with the same settings: median "
                              "|rerun - frozen| 0.0009 test NDCG@10")
  assert "yelp 0.0012 (3 seeds)" in lines[-1]
