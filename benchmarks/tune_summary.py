"""Table of finished probe cells: validation (and test) NDCG@10 / HR@10.

  python benchmarks/tune_summary.py ROOT [--baseline=base]

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


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("root")
  p.add_argument("--baseline", default="base")
  args = p.parse_args()
  print(table(cells(args.root), args.baseline))


if __name__ == "__main__":
  main()
