"""Validation HR@10 / NDCG@10 of the most popular unseen items (a reference
for the generator's and the recommender's validation figures).

  DIFF4REC_DATA_DIR=../shared/data python benchmarks/popularity_valid.py \
      [--dataset=beauty]

Popularity counts the training interactions (every user's items before its
validation target; no validation or test item counts), as the `popular`
control does (`candidates.item_counts`); each user's own earlier items are
excluded from its list, the target itself is not (metrics.py's rule).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import paper  # pylint: disable=g-import-not-at-top
from diff4rec_jax import candidates  # pylint: disable=g-import-not-at-top
from diff4rec_jax import data as data_lib  # pylint: disable=g-import-not-at-top


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--dataset", default="beauty")
  args = p.parse_args()
  c = paper.get_config(args.dataset)
  c.data.dir = os.environ.get("DIFF4REC_DATA_DIR", "")
  ds = data_lib.load(c.data)
  _, targets = ds.eval_arrays("valid", c.data.max_len)
  indptr, items = ds.history_csr("valid")
  _, pos = data_lib.row_ranges(ds.indptr[:-1], ds.split_end("train"))
  counts = candidates.item_counts(ds.items[pos], ds.num_items).astype(float)
  counts[0] = -1
  top = np.argsort(-counts, kind="stable")[:300]
  hits = ndcg = 0.0
  for u, t in enumerate(targets):   # a benchmark, not a hot path
    seen = set(items[indptr[u]:indptr[u + 1]].tolist()) - {int(t)}
    ranked = [i for i in top if i not in seen][:10]
    if t in ranked:
      r = ranked.index(t)
      hits += 1
      ndcg += 1 / np.log2(r + 2)
  n = len(targets)
  print(f"{args.dataset}: {n} users, {ds.num_items} items; most popular "
        f"unseen: valid HR@10 {hits / n:.4f}, NDCG@10 {ndcg / n:.4f}")


if __name__ == "__main__":
  main()
