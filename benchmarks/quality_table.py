"""Collects finished runs into a Markdown table beside the paper's rows.

Reads `<workdir>/results.json` of every workdir given (finished runs only;
a run still training is listed as such with its best validation so far from
metrics.jsonl) and prints a table of test HR@5/10/20, NDCG@5/10, MRR with the
paper's Table 2/3 rows for the same dataset and backbone.

Usage:
  python benchmarks/quality_table.py /work/runs/ml1m_sasrec_ce [...] \
      > results/log/quality.md
"""

import json
import os
import sys

# Paper, Table 2 (HR@5, HR@10, HR@20, NDCG@5, NDCG@10, MRR) and Table 3
# (HR@10, NDCG@10 only), full ranking.
PAPER = {
    ("ml-1m", "sasrec"): (0.1047, 0.1775, 0.2807, 0.0598, 0.0824, 0.0819),
    ("ml-1m", "gru4rec"): (0.0792, 0.1573, 0.2374, 0.0458, 0.0667, 0.0479),
    ("ml-1m", "caser"): (0.0813, 0.1556, 0.2528, 0.0512, 0.0740, 0.0673),
    ("ml-1m", "diff4rec"): (0.1401, 0.2238, 0.3830, 0.0812, 0.1222, 0.1202),
    ("beauty", "sasrec"): (0.0325, 0.0633, 0.0971, 0.0204, 0.0303, 0.0285),
    ("beauty", "gru4rec"): (0.0152, 0.0268, 0.0413, 0.0094, 0.0137, 0.0133),
    ("beauty", "caser"): (0.0158, 0.0263, 0.0427, 0.0109, 0.0149, 0.0113),
    ("beauty", "diff4rec"): (0.0456, 0.0871, 0.1347, 0.0301, 0.0426, 0.0368),
    ("yelp", "sasrec"): (0.0153, 0.0286, 0.0481, 0.0089, 0.0134, 0.0119),
    ("yelp", "gru4rec"): (0.0142, 0.0252, 0.0453, 0.0087, 0.0124, 0.0101),
    ("yelp", "caser"): (0.0139, 0.0247, 0.0451, 0.0083, 0.0122, 0.0103),
    ("yelp", "diff4rec"): (0.0198, 0.0411, 0.0595, 0.0125, 0.0171, 0.0157),
}
COLS = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "MRR")


def _row(name, vals):
  return "| " + name + " | " + " | ".join(
      f"{v:.4f}" if isinstance(v, float) else str(v) for v in vals) + " |"


def describe(workdir):
  res_path = os.path.join(workdir, "results.json")
  if os.path.exists(res_path):
    with open(res_path) as f:
      r = json.load(f)
    c = r["config"]
    return c, [r["test"][k] for k in COLS], (
        f"finished: best epoch {r['best_epoch']} of {r['epochs_run']}, "
        f"train {r['train_seconds'] / 60:.0f} min")
  with open(os.path.join(workdir, "config.json")) as f:
    c = json.load(f)
  best, last = None, 0
  mpath = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(mpath):
    for line in open(mpath):
      rec = json.loads(line)
      last = max(last, rec.get("epoch", 0))
      if "valid/NDCG@10" in rec and (best is None or
                                     rec["valid/NDCG@10"] > best[1]):
        best = (rec["epoch"], rec["valid/NDCG@10"], rec["valid/HR@10"])
  note = (f"still training (epoch {last}); best valid so far: HR@10 "
          f"{best[2]:.4f} NDCG@10 {best[1]:.4f} at epoch {best[0]}"
          if best else f"still training (epoch {last})")
  return c, None, note


def main(workdirs):
  print("| run | " + " | ".join(COLS) + " |")
  print("|---" * (len(COLS) + 1) + "|")
  notes = []
  shown = set()
  for wd in workdirs:
    c, test, note = describe(wd)
    ds, model = c["data"]["name"], c["model"]["name"]
    label = (f"ours: {model} {c['train']['loss']} mode={c['mode']} "
             f"({os.path.basename(wd.rstrip('/'))})")
    if test is not None:
      print(_row(label, test))
    else:
      print(_row(label, ["-"] * len(COLS)))
    notes.append(f"- `{os.path.basename(wd.rstrip('/'))}`: {ds}; {note}")
    for key in ((ds, model), (ds, "diff4rec")):
      if key in PAPER and key not in shown:
        shown.add(key)
        print(_row(f"paper: {key[1]} on {key[0]}", PAPER[key]))
  print()
  print("\n".join(notes))


if __name__ == "__main__":
  main(sys.argv[1:])
