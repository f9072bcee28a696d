"""Seconds to recommend for every user of a run, cold (compilation
included) and warm, for a few choices of batch widths.

    python benchmarks/recommend_speed.py --workdir=runs/ml1m [--k=10]

Prints one line per width set: the widths, cold and warm seconds for all
users (`Recommender.recommend_users`), users per second warm. The widths
change only the speed (rows are left-padded; the models' outputs do not
depend on the padding), which the last column checks.
"""

import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from diff4rec_jax import checkpointing  # pylint: disable=g-import-not-at-top
from diff4rec_jax import recommend  # pylint: disable=g-import-not-at-top

_WORKDIR = flags.DEFINE_string("workdir", None, "A run or an export.")
_K = flags.DEFINE_integer("k", 10, "Items per user.")


def main(argv):
  del argv
  checkpointing.quiet_orbax()
  t = time.time()
  r = recommend.load(_WORKDIR.value)
  print(f"load {time.time() - t:.1f}s; {len(r.users.user_ids)} users, "
        f"{r.num_items} items, max_len {r.max_len}")
  ref = None
  tc = r.config.train
  sets = {"length_buckets": tc.length_buckets,
          "eval_length_buckets": tc.eval_length_buckets,
          "max_len only": ()}
  for name, widths in sets.items():
    r.set_widths(widths)
    r._top_k_fns = {}  # pylint: disable=protected-access
    times = []
    for _ in range(2):
      t = time.time()
      _, items, scores = r.recommend_users(k=_K.value)
      times.append(time.time() - t)
    if ref is None:
      ref = (items, scores)
    same = (items == ref[0]).mean()
    print(f"{name:20s} {[int(w) for w in r.widths]}: cold {times[0]:.2f}s  warm "
          f"{times[1]:.2f}s  {len(items) / times[1]:.0f} users/s  "
          f"same items {same:.4f}  max score diff "
          f"{np.abs(scores - ref[1]).max():.2e}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
