"""Recommendations from a trained run: top-k items per user, candidate scores.

Command line (a run's workdir, or an export made by `diff4rec_jax.export`):

    python -m diff4rec_jax.recommend --workdir=runs/ml1m --k=10 --out=recs.tsv
        [--users=FILE|1,2,3] [--histories=FILE] [--unknown_items=error|skip]

writes a TSV with the header `user  rank  item  score` and one row per user
and rank (1 = best). Every user's items are the k highest-scoring items that
come after the user's WHOLE sequence in the data file (training, validation
and test items all count as seen and are never recommended), scored by the
run's best-validation parameters. `--users` picks users (a file of ids, one
per line, or a comma list); `--histories` gives new histories instead, in
the data file formats (`user item` lines, or `user item item ...`). Ids are
the dataset's raw ids when its id maps exist next to the data file
(`<name>_item_map.tsv`, `<name>_user_map.tsv`, as `prepare` writes them),
else the ids of the data file. An item of a new history that the model does
not know is an error naming file and line, or with `--unknown_items=skip`
is dropped (the count is logged).

Python:

    from diff4rec_jax import recommend
    r = recommend.load("runs/ml1m")          # workdir or export folder
    items, scores = r.recommend([[3186, 1721, 1022]], k=10)   # [1, 10] each
    users, items, scores = r.recommend_users([1, 2], k=10)
    r.score([3186, 1721], candidates=[1270, 2340])            # [2] scores

Scores are the recommender's logits (hidden state . item embedding). Users
are scored in fixed-size batches (the last one padded) sorted by length and
cut to the run's `train.length_buckets` widths, one compiled call per batch
(`metrics.top_k_unseen`), so all of ML-1M's 6,040 users take seconds on CPU.
The object is `recommender.Recommender`; this module loads one and is the
command line.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Optional

from absl import logging
import numpy as np

from diff4rec_jax import checkpointing
from diff4rec_jax import data as data_lib
from diff4rec_jax import export
from diff4rec_jax import recommender
from diff4rec_jax.serving_files import format_tsv
from diff4rec_jax.serving_files import parse_users
from diff4rec_jax.serving_files import read_histories
from diff4rec_jax.serving_files import RecommendError
from diff4rec_jax.serving_files import UNKNOWN_ITEMS
from diff4rec_jax.serving_files import write_text


# Names of the Python API documented above (`recommend.Recommender`, ...).
Recommender = recommender.Recommender
Histories = recommender.Histories


# ----------------------------------------------------------------------------
# Loading a run or an export
# ----------------------------------------------------------------------------
def load(path: str, data_dir: Optional[str] = None) -> Recommender:
  """A Recommender from a run's workdir or from an export folder.

  A workdir: its config.json, its best checkpoint
  (`recommender.restore_best_params`) and its data file (found as training
  found it; `data_dir` replaces config.data.dir when the data has moved).
  An export (a folder with manifest.json, `diff4rec_jax.export`): checked
  against its manifest's checksums; no training data needed.
  """
  if os.path.isfile(os.path.join(path, "manifest.json")):
    return export.load_export(path)
  return recommender.from_workdir(path, data_dir)


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("workdir", None, "A run's workdir, or an export folder "
                      "(python -m diff4rec_jax.export).")
  flags.DEFINE_integer("k", 10, "Items per user.")
  flags.DEFINE_string("users", "", "Users: a file of ids (one a line) or a "
                      "comma list; '' = every user (of --histories if given, "
                      "else of the data).")
  flags.DEFINE_string("histories", "", "New histories, in the data file "
                      "formats (`user item` or `user item item ...` lines).")
  flags.DEFINE_enum("unknown_items", "error", UNKNOWN_ITEMS,
                    "An item of --histories the model does not know: error "
                    "(stop, naming file and line) or skip (drop it).")
  flags.DEFINE_string("out", "-", "Output TSV ('-' = stdout).")
  flags.DEFINE_string("data_dir", "", "Data folder, if the run's data moved "
                      "(workdirs only).")
  flags.DEFINE_integer("batch_size", 0, "Users per compiled call; 0 = the "
                       "run's train.eval_batch_size.")
  flags.DEFINE_list("widths", [], "Batch widths (speed only; one compile "
                    "each); empty = the run's train.length_buckets.")
  return flags.FLAGS


_FLAGS = None


def main(argv):
  flags = _FLAGS
  if len(argv) > 1:
    raise RecommendError(f"unexpected arguments: {argv[1:]}")
  t0 = time.time()
  r = load(flags.workdir, flags.data_dir or None)
  logging.info("loaded %s in %.1fs: %s, %d items%s", flags.workdir,
               time.time() - t0, r.config.model.name, r.num_items,
               f", best epoch {r.meta['best_epoch']}"
               if r.meta.get("best_epoch") else "")
  if flags.batch_size:
    r.batch_size = flags.batch_size
  if flags.widths:
    r.set_widths([int(w) for w in flags.widths])
  t1 = time.time()
  if flags.histories:
    users, hist, where = read_histories(flags.histories)
    if flags.users:
      want = np.array(parse_users(flags.users), dtype=str)
      missing = want[~np.isin(want, users)]
      if missing.size:
        raise RecommendError(f"--users: {', '.join(missing[:5])} not in "
                             f"{flags.histories}")
      pick = np.flatnonzero(np.isin(users, want))
      users, hist = users[pick], [hist[j] for j in pick]
      where = None
    indptr, items = r.histories_csr(hist, flags.unknown_items, where)
    ids, scores = r.top_k_internal(indptr, items, flags.k)
    items = r.items.to_shown(ids)
  else:
    users, items, scores = r.recommend_users(
        parse_users(flags.users) if flags.users else None, flags.k)
  dt = time.time() - t1
  write_text(flags.out, format_tsv(users, items, scores))
  logging.info("top-%d for %d users in %.2fs (%.0f users/s) -> %s", flags.k,
               len(users), dt, len(users) / max(dt, 1e-9), flags.out)


def run():
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  global _FLAGS
  _FLAGS = _define_flags()
  flags.mark_flags_as_required(["workdir"])

  def _main(argv):
    checkpointing.quiet_orbax()
    try:
      main(argv)
    except (RecommendError, data_lib.DataError) as e:
      logging.error("%s", e)
      sys.exit(f"error: {e}")
  app.run(_main)


if __name__ == "__main__":
  run()
