"""Reruns of lost grid cells beside the figures of the frozen reports.

Session 21 lost the run folders of sessions 12-20 (results/README.md); their
reports are frozen in results/log/REPRODUCTION*_session20.md and the queues
rerun the cells. This prints, for every cell finished in both, the frozen
report's test NDCG@10 and best epoch (its "Cells" table, 4 decimals) beside
the rerun's (its results.json), and whether the rerun ran with the same
settings (the Cells table's "settings differing from the config file",
compared as text):

  python benchmarks/rerun_compare.py \
      --frozen=results/log/REPRODUCTION_paper_session20.md \
      --root=/work/runs/paper --setting=paper

The summary line gives the median absolute difference of the cells with the
same settings, beside the seed-to-seed spread that the verdicts are judged
against (the sample std over seeds of the frozen base cells, per dataset).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from benchmarks import grid  # pylint: disable=g-import-not-at-top
from benchmarks import report  # pylint: disable=g-import-not-at-top

_ROW = re.compile(r"^\| `(?P<cell>[^`]+)` \| finished \| best epoch "
                  r"(?P<best>\d+) of (?P<ran>\d+),.*?test NDCG@10 "
                  r"(?P<ndcg>[0-9.]+)[^|]*\| (?P<settings>[^|]*?) \|$")


def read_frozen(path: str) -> dict:
  """{cell name: (test NDCG@10, best epoch, settings text)} of the finished
  cells in a report's Cells table."""
  out = {}
  with open(path) as f:
    for line in f:
      m = _ROW.match(line.strip())
      if m:
        out[m["cell"]] = (float(m["ndcg"]), int(m["best"]),
                          m["settings"].strip())
  return out


def _cell(name: str, setting: str) -> Optional[grid.Cell]:
  parts = name.rsplit("-", 3)
  if len(parts) != 4 or not parts[3].startswith("s"):
    return None
  return grid.Cell(parts[0], parts[1], parts[2], int(parts[3][1:]), setting)


def compare(frozen: dict, root: str, setting: str) -> str:
  """The Markdown table and summary (pure apart from reading `root`)."""
  rows, same_diffs = [], []
  for name, (old, old_best, old_set) in frozen.items():
    cell = _cell(name, setting)
    if cell is None:
      continue
    st = grid.inspect_cell(cell, root)
    if st.status != "done":
      continue
    new = float(st.results["test"]["NDCG@10"])
    new_set = report._deviation_text(st)  # pylint: disable=protected-access
    same = new_set == old_set
    if same:
      same_diffs.append(abs(round(new, 4) - old))
    rows.append(f"| `{name}` | {old:.4f} ({old_best}) | {new:.4f} "
                f"({st.results.get('best_epoch')}) | {new - old:+.4f} | "
                f"{'yes' if same else f'no: {old_set} / {new_set}'} |")
  spreads = []
  for ds in sorted({n.rsplit('-', 3)[0] for n in frozen}):
    base = [v[0] for n, v in frozen.items()
            if n.startswith(ds + "-") and n.rsplit("-", 3)[2] == "base"]
    if len(base) > 1:
      spreads.append(f"{ds} {statistics.stdev(base):.4f} "
                     f"({len(base)} seeds)")
  lines = ["| cell | frozen test NDCG@10 (best epoch) | rerun | rerun - "
           "frozen | same settings |", "|---|---|---|---|---|"] + rows
  if same_diffs:
    lines.append("")
    lines.append(
        f"{len(same_diffs)} cells with the same settings: median |rerun - "
        f"frozen| {statistics.median(same_diffs):.4f} test NDCG@10 (rerun "
        "rounded to 4 decimals like the frozen figure); seed std of the "
        "frozen base cells: " + ("; ".join(spreads) or "n/a") + ".")
  return "\n".join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--frozen", required=True)
  p.add_argument("--root", required=True)
  p.add_argument("--setting", default="strong", choices=("strong", "paper"))
  a = p.parse_args(argv)
  print(compare(read_frozen(a.frozen), a.root, a.setting))
  return 0


if __name__ == "__main__":
  sys.exit(main())
