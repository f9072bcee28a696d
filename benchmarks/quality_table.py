"""Collects finished runs into a Markdown table beside the paper's rows.

Reads `<workdir>/results.json` of every workdir given (finished runs only;
a run still training is listed as such with its best validation so far from
metrics.jsonl) and prints a table of test HR@5/10/20, NDCG@5/10, MRR with the
paper's Table 2 rows (benchmarks/paper.py) for the same dataset and backbone.

Usage:
  python benchmarks/quality_table.py /work/runs/ml1m_sasrec_ce [...] \
      > results/log/quality.md
"""

import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from benchmarks import paper  # pylint: disable=g-import-not-at-top

# The paper's Table 2 (HR@5, HR@10, HR@20, NDCG@5, NDCG@10, MRR), full
# ranking: (dataset, backbone or 'diff4rec') -> values.
PAPER = paper.TABLE2
COLS = paper.TABLE2_COLS


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
