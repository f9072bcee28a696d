"""Table of finished probe cells: validation (and test) NDCG@10 / HR@10.

  python benchmarks/tune_summary.py ROOT [--baseline=base]
  python benchmarks/tune_summary.py ROOT --choose

--choose reads ROOT/variants.tsv (name, mode, overrides, kind; written by
benchmarks/tune_beauty_paper.sh) and prints the overrides of the 'method'
variant with the best mean validation NDCG@10, the choice the paper grid
then runs with; it also writes ROOT/CHOICE.md (the table and the choice).
If a run of the chosen variant was stopped by its epoch cap while still
improving (`grid.cut_by_cap`), the printed overrides also double the cap
(`--config.train.num_epochs=<2 x cap>`, for every cell of the grid, base
cells too), so that the grid's budget does not decide its verdict. It
exits 3, printing nothing on stdout, while a method variant is unfinished.
Controls (kind 'control') and checks (kind 'check', e.g. a longer epoch
budget) are never chosen and never waited for.

ROOT holds one folder per variant (benchmarks/tune_ml100k_bce.sh), each with
reproduce.py cell workdirs `<dataset>-<model>-<mode>-s<seed>`. Prints a
Markdown table: mean ± sample std over finished seeds, per-seed validation
NDCG@10, and the paired (same-seed) relative difference to the baseline
variant's validation NDCG@10.
"""

import argparse
import json
import os
import re
import statistics
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from benchmarks import grid  # pylint: disable=g-import-not-at-top


def cells(root: str) -> dict:
  """{variant: {seed: results}} of every finished cell under root."""
  out = {}
  for variant in sorted(os.listdir(root)):
    vdir = os.path.join(root, variant)
    if not os.path.isdir(vdir):
      continue
    for cell in sorted(os.listdir(vdir)):
      m = re.fullmatch(r".+-s(\d+)", cell)
      path = os.path.join(vdir, cell, "results.json")
      if m and os.path.exists(path):
        with open(path) as f:
          out.setdefault(variant, {})[int(m.group(1))] = json.load(f)
  return out


def _ms(xs):
  if not xs:
    return "—"
  if len(xs) == 1:
    return f"{xs[0]:.4f}"
  return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}"


def table(found: dict, baseline: str) -> str:
  rows = ["| variant | seeds | valid NDCG@10 | valid HR@10 | test NDCG@10 | "
          "test HR@10 | per-seed valid NDCG@10 | vs " + baseline
          + " (valid NDCG@10, paired) | best epochs |",
          "|---|---|---|---|---|---|---|---|---|"]
  base = found.get(baseline, {})
  for variant, seeds in found.items():
    ss = sorted(seeds)

    def vals(split, metric):
      return [seeds[s][split][metric] for s in ss]

    paired = [s for s in ss if s in base]
    if variant != baseline and paired:
      d = sum(seeds[s]["valid"]["NDCG@10"] for s in paired)
      b = sum(base[s]["valid"]["NDCG@10"] for s in paired)
      rel = f"{(d - b) / b:+.1%} ({len(paired)} seeds)"
    else:
      rel = "—"
    per = ", ".join(f"{v:.4f}" for v in vals("valid", "NDCG@10"))
    epochs = ", ".join(str(seeds[s].get("best_epoch")) for s in ss)
    rows.append(f"| {variant} | {len(ss)} | {_ms(vals('valid', 'NDCG@10'))} "
                f"| {_ms(vals('valid', 'HR@10'))} | "
                f"{_ms(vals('test', 'NDCG@10'))} | {_ms(vals('test', 'HR@10'))}"
                f" | {per} | {rel} | {epochs} |")
  return "\n".join(rows)


def read_variants(path: str) -> list:
  """[(name, mode, overrides, kind)] of a variants.tsv."""
  out = []
  with open(path) as f:
    for line in f:
      if line.strip():
        name, mode, over, kind = line.rstrip("\n").split("\t")
        out.append((name, mode, over, kind))
  return out


def choose(found: dict, variants: list):
  """(name, overrides) of the finished 'method' variant with the best mean
  validation NDCG@10, or None while one of them is unfinished."""
  methods = [v for v in variants if v[3] == "method"]
  if not methods or any(v[0] not in found for v in methods):
    return None
  score = lambda v: statistics.mean(r["valid"]["NDCG@10"]
                                    for r in found[v[0]].values())
  best = max(methods, key=score)
  return best[0], best[2]


def budget_override(results) -> str:
  """'--config.train.num_epochs=<2 x cap>' if one of these finished runs
  was stopped by its cap while still improving, else ''."""
  cut = [r for r in results if grid.cut_by_cap(r)]
  if not cut:
    return ""
  cap = cut[0]["config"]["train"]["num_epochs"]
  return f"--config.train.num_epochs={2 * cap}"


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("root")
  p.add_argument("--baseline", default="base")
  p.add_argument("--choose", action="store_true")
  args = p.parse_args()
  found = cells(args.root)
  if not args.choose:
    print(table(found, args.baseline))
    return
  variants = read_variants(os.path.join(args.root, "variants.tsv"))
  picked = choose(found, variants)
  if picked is None:
    missing = [v[0] for v in variants if v[3] == "method" and v[0] not in found]
    print(f"no choice yet; unfinished: {', '.join(missing) or '(no method)'}",
          file=sys.stderr)
    sys.exit(3)
  name, over = picked
  budget = budget_override(found[name].values())
  with open(os.path.join(args.root, "CHOICE.md"), "w") as f:
    f.write(f"# Chosen on validation NDCG@10: `{name}`\n\n"
            f"Overrides: `{over or '(none: configs/paper.py as it is)'}`\n\n"
            + (f"Budget: `{budget}` (a run of `{name}` was stopped by its "
               "epoch cap while still improving)\n\n" if budget else
               f"Budget: the configs' (no run of `{name}` was stopped by its "
               "epoch cap while still improving)\n\n")
            + f"{table(found, args.baseline)}\n")
  print(" ".join(t for t in (over, budget) if t))


if __name__ == "__main__":
  main()
