"""How popular the generator's candidates are, against the training data.

  DIFF4REC_DATA_DIR=../shared/data python benchmarks/candidate_popularity.py \
      --topm=<workdir>/generator/generator_topm.npz [--dataset=beauty]
  ... --teacher=<a finished run's workdir> [--top_m=100] [--dataset=beauty]

(--teacher: the candidates that `augment.candidates=teacher` takes from that
run, computed as train.py computes them.)

Prints, for the top-M file's candidates (all users, all M) and for the
training interactions: their items' popularity ranks (rank 0 = the item with
the most training interactions: each user's training prefix, counted as
the 'popular' control counts them), and the share that falls in the 100 and the
1,000 most popular items, plain and weighted by the candidates' sampling
probabilities (what the augmentation draws from). Then how personal the
candidates are: the share of users whose validation item is among their
own M candidates, beside the share for the previous user's M (a row of
candidates that ignored its user would score the same on both; a
misaligned file would score lower on its own rows).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import paper  # pylint: disable=g-import-not-at-top
from diff4rec_jax import candidates  # pylint: disable=g-import-not-at-top
from diff4rec_jax import data as data_lib  # pylint: disable=g-import-not-at-top


def popularity_ranks(train_items: np.ndarray, num_items: int) -> np.ndarray:
  """[N + 1] rank of each item by training count (0 = most popular), the
  counts of the 'popular' control (`candidates.item_counts`)."""
  counts = candidates.item_counts(train_items, num_items).astype(float)
  counts[0] = -1
  order = np.argsort(-counts, kind="stable")
  rank = np.empty(num_items + 1, np.int64)
  rank[order] = np.arange(num_items + 1)
  return rank


def describe(name: str, rank: np.ndarray, weights=None) -> str:
  """Quartiles of `rank` and its shares under 100 and 1,000, weighted by
  `weights` (None: each entry counts once)."""
  w = np.ones_like(rank, float) if weights is None else weights
  w = w / w.sum()
  order = np.argsort(rank, kind="stable")
  cum = np.cumsum(w[order])
  q = [rank[order][min(np.searchsorted(cum, f), len(cum) - 1)]
       for f in (0.25, 0.5, 0.75)]
  shares = [(w * (rank < k)).sum() for k in (100, 1000)]
  return (f"{name}: popularity rank quartiles {q[0]:.0f} / {q[1]:.0f} / "
          f"{q[2]:.0f}; share in the top 100 / 1,000 items "
          f"{shares[0]:.3f} / {shares[1]:.3f}")


def target_hits(items: np.ndarray, targets: np.ndarray):
  """(own, neighbour): the share of users u whose target is in row u of
  `items` [U, M], and in row u - 1 (row U - 1 for user 0)."""
  own = (items == targets[:, None]).any(axis=1).mean()
  other = (np.roll(items, 1, axis=0) == targets[:, None]).any(axis=1).mean()
  return float(own), float(other)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--topm", help="a generator's top-M file")
  src.add_argument("--teacher", help="a finished run's workdir")
  p.add_argument("--top_m", type=int, default=100)
  p.add_argument("--dataset", default="beauty")
  args = p.parse_args()
  c = paper.get_config(args.dataset)
  c.data.dir = os.environ.get("DIFF4REC_DATA_DIR", "")
  ds = data_lib.load(c.data)
  _, pos = data_lib.row_ranges(ds.indptr[:-1], ds.split_end("train"))
  train = ds.items[pos]
  rank = popularity_ranks(train, ds.num_items)
  if args.topm:
    z = np.load(args.topm)
    items, probs = z["items"], z["probs"]
  else:
    from diff4rec_jax import train as train_lib  # pylint: disable=g-import-not-at-top
    c.augment.update(candidates="teacher", teacher_workdir=args.teacher,
                     top_m=args.top_m)
    items, probs = train_lib.teacher_candidates(c, ds)
  keep = items > 0
  print(f"{args.dataset}: {ds.num_users} users, {ds.num_items} items, "
        f"{len(train)} training interactions; {args.topm or args.teacher}: "
        f"{items.shape[1]} candidates per user, "
        f"{len(np.unique(items[keep]))} distinct items")
  print(describe("training interactions", rank[train]))
  print(describe("candidates", rank[items[keep]]))
  print(describe("candidates, probability-weighted", rank[items[keep]],
                 probs[keep]))
  own, other = target_hits(items, ds.targets("valid"))
  print(f"validation item among the user's own candidates: {own:.4f} of "
        f"users; among the previous user's: {other:.4f}")


if __name__ == "__main__":
  main()
