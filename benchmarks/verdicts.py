"""The README's verdict table: each claim of the paper that the finished
grid cells check, in the paper setting and the strong setting.

  python benchmarks/verdicts.py [--paper_root=/work/runs/paper] \
      [--strong_root=/work/runs/strong] [--readme=README.md]

Prints a Markdown table (setting, dataset, claim, verdict, our paired test
lifts, the paper's). With --readme, replaces the text between the lines
`<!-- verdicts -->` and `<!-- /verdicts -->` of that file. Claims, labels
and lifts are the reports' own (benchmarks/stats.py): a lift is mean Δ over
the seeds finished in both rows, relative to the second row's mean; a label
of "holds" needs the lift beyond one std of the paired Δ on HR@10 and
NDCG@10 alike. A verdict notes the epoch cap when one of the paired cells
ran to `train.num_epochs` still improving (benchmarks/grid.cut_by_cap).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from benchmarks import grid  # pylint: disable=g-import-not-at-top
from benchmarks import paper  # pylint: disable=g-import-not-at-top
from benchmarks import stats  # pylint: disable=g-import-not-at-top

START, END = "<!-- verdicts -->", "<!-- /verdicts -->"
METRICS = ("HR@10", "NDCG@10")
_ALL = grid.ALL_MODES
# Issue 22's grid: (setting, title, dataset, backbones, modes). The
# duplicate control runs on Beauty and Yelp only (benchmarks/paper_queue.sh).
GRIDS = (("paper", "paper (BCE)", "beauty", ("sasrec",), _ALL),
         ("paper", "paper (BCE)", "yelp", ("sasrec",), _ALL),
         ("paper", "paper (BCE)", "ml-1m", ("sasrec",),
          tuple(m for m in _ALL if m != "duplicate")),
         ("paper", "paper (BCE)", "beauty", ("gru4rec", "caser"),
          ("base", "diff4rec")),
         ("strong", "strong (CE)", "beauty", ("sasrec",), grid.MODES),
         ("strong", "strong (CE)", "yelp", ("sasrec",), grid.MODES),
         ("strong", "strong (CE)", "ml-1m", ("sasrec",), grid.MODES))


def _pct(x: Optional[float]) -> str:
  return "—" if x is None else f"{100 * x:+.1f}%"


def _claim(model: str, a: str, b: str) -> str:
  """A short name of the claim 'row a beats row b'."""
  if (a, b) == ("diff4rec", "base"):
    return f"Diff4Rec improves {grid.MODEL_TITLES[model]}"
  if (a, b) == ("aug", "base"):
    return "augmentation without curriculum beats base"
  if (a, b) == ("diff4rec", "aug"):
    return "curriculum beats random order"
  if b == "duplicate":
    return "augmentation beats duplicated originals (control)"
  return f"generator's candidates beat {b} ones (control)"


def rows(setting: str, root: str, dataset: str, models: Sequence[str],
         modes: Sequence[str]) -> list:
  """[(claim, label, ours, paper's)] of one dataset's grid in a setting."""
  cells = grid.plan_cells([dataset], models, modes, grid.DEFAULT_SEEDS,
                          setting)
  states = grid.inspect_grid(cells, root)
  summaries = stats.summarize(states)
  done = {(s.cell.model, s.cell.mode, s.cell.seed): s for s in states
          if s.status == "done"}
  out = []
  for model, a, b, _, label, lifts in stats.claim_results(
      dataset, summaries, models, modes):
    n = min(lifts[m].n for m in METRICS)
    ours = "—" if not n else (
        " / ".join(_pct(lifts[m].relative) for m in METRICS) +
        f" ({n} seed{'s' if n > 1 else ''})")
    theirs = " / ".join(_pct(paper.paper_lift(dataset, model, a, b, m))
                        for m in METRICS)
    paired = [(done[(model, a, k)], done[(model, b, k)])
              for k in grid.DEFAULT_SEEDS
              if (model, a, k) in done and (model, b, k) in done]
    if any(grid.cut_by_cap(s.results) for pair in paired for s in pair):
      label += " (epoch cap: a cell stopped while improving)"
    out.append((_claim(model, a, b), label, ours,
                "—" if theirs == "— / —" else theirs))
  return out


def table(roots: dict) -> str:
  """The Markdown table for {setting: root}."""
  lines = ["| setting | dataset | claim | verdict | ours: test HR@10 / "
           "NDCG@10 lift | paper's lift |", "|---|---|---|---|---|---|"]
  for setting, title, dataset, models, modes in GRIDS:
    root = roots.get(setting)
    if not root:
      continue
    for claim, label, ours, theirs in rows(setting, root, dataset, models,
                                           modes):
      lines.append(f"| {title} | {dataset} | {claim} | {label} | {ours} | "
                   f"{theirs} |")
  return "\n".join(lines) + "\n"


def replace_block(text: str, block: str) -> str:
  """`text` with the lines between START and END replaced by `block`.

  Raises:
    ValueError: the markers are missing or out of order.
  """
  i, j = text.find(START), text.find(END)
  if i < 0 or j < i:
    raise ValueError(f"expected a line {START} and, after it, a line {END}")
  return text[:i + len(START)] + "\n" + block + text[j:]


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--paper_root", default="/work/runs/paper")
  p.add_argument("--strong_root", default="/work/runs/strong")
  p.add_argument("--readme", default=None,
                 help=f"file whose {START} ... {END} block to rewrite")
  args = p.parse_args(argv)
  block = table({"paper": args.paper_root, "strong": args.strong_root})
  print(block, end="")
  if args.readme:
    with open(args.readme) as f:
      text = f.read()
    try:
      new = replace_block(text, block)
    except ValueError as e:
      raise SystemExit(f"{args.readme}: {e}")
    with open(args.readme, "w") as f:
      f.write(new)
  return 0


if __name__ == "__main__":
  sys.exit(main())
