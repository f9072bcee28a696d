"""The datasets the project knows, and the command that prepares them.

    python -m diff4rec_jax.datasets.prepare --dataset=ml-1m [--data_dir=data]

(`python -m diff4rec_jax.prepare` is the old name of this command and still
works.) This module owns the registry and the whole way from a public raw
release to the pair-format file that `data.read_interactions` reads
(`<user> <item>\\n`, users contiguous in ascending id order, time order
within a user, ids 1-based and contiguous); the steps live beside it:

* `SOURCES`: each dataset's raw file (`download.Source`: URL, raw format,
  checksums, or how to get it by hand).
* `ensure_dataset(name, data_dir)` returns the pair file of a dataset, making
  it when it is missing: the raw file is found under
  `<data_dir>/raw/<name>/` or fetched there (`download.download`), parsed and
  filtered (`raw.parse_raw`, `raw.preprocess`) and written atomically with
  its stats and id maps (`writers`). 'synthetic-steam' is generated
  (`synthetic.py`).
* `ensure_for_config(config.data)` is the fetch-if-missing step of a run:
  the entry points (train, recommend, benchmarks) call it before
  `data.load`, which itself never downloads (`data` does not import this
  package).

Maps back to the raw ids are written next to the data file
(`<name>_user_map.tsv`, `<name>_item_map.tsv`).

Checksums: `SOURCES` records the md5 / sha256 of each raw file where known.
The ML-100K and ML-1M md5s are GroupLens' published values. The sha256s of
`ratings_Beauty.csv`, `steam_reviews.json.gz` and `ml-100k.zip` are the values
the ISG-Siegen/OmniRec loaders pin; they could not be verified here (no
network), so a mismatch names them as such. A known checksum that does not
match is an error (the file is deleted); `--skip_checksum` turns the check off
with a logged warning. Where no checksum is known the file is accepted with a
logged warning.

Yelp cannot be downloaded by a script (the Yelp Open Dataset needs a licence
click-through): `ensure_dataset('yelp', ...)` raises `DataError` saying where to
put `yelp_academic_dataset_review.json`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Optional

from diff4rec_jax import data
from diff4rec_jax.datasets import download as download_lib
from diff4rec_jax.datasets import raw as raw_lib
from diff4rec_jax.datasets import synthetic
from diff4rec_jax.datasets import writers

DataError = data.DataError
Source = download_lib.Source
MIN_USER_ACTIONS = raw_lib.MIN_USER_ACTIONS


SOURCES = {
    "ml-100k": Source(
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        filename="ml-100k.zip", fmt="movielens_tab", member="ml-100k/u.data",
        md5="0e33842e24a9c977be4e0107933c0723",
        sha256=(
            "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"),
        checksum_note=("md5 published by GroupLens; sha256 as pinned by the "
                       "ISG-Siegen/OmniRec loader (not verified here)"),
        homepage="https://grouplens.org/datasets/movielens/100k/"),
    "ml-1m": Source(
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        filename="ml-1m.zip", fmt="movielens_dat", member="ml-1m/ratings.dat",
        md5="c4d9eecfca2ab87c1945afe126590906",
        checksum_note="md5 published by GroupLens",
        homepage="https://grouplens.org/datasets/movielens/1m/"),
    "beauty": Source(
        url=("https://snap.stanford.edu/data/amazon/productGraph/"
             "categoryFiles/ratings_Beauty.csv"),
        filename="ratings_Beauty.csv", fmt="amazon_csv",
        sha256=(
            "17d5232b90444beecfe758ce1446e5300230491f3a88ac802992ca95fc4c150f"),
        checksum_note=("sha256 as pinned by the ISG-Siegen/OmniRec loader "
                       "(not verified here)"),
        homepage=("https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/"
                  "links.html")),
    "steam": Source(
        url="https://cseweb.ucsd.edu/~wckang/steam_reviews.json.gz",
        filename="steam_reviews.json.gz", fmt="steam",
        sha256=(
            "40c6343deedf488689987749c5f8435233da48c163fbaa2a7766c215d584bc61"),
        checksum_note=("sha256 as pinned by the ISG-Siegen/OmniRec loader "
                       "(not verified here)"),
        homepage="https://github.com/kang205/SASRec"),
    "yelp": Source(
        url="", filename="yelp_academic_dataset_review.json", fmt="yelp",
        manual=(
            "The Yelp Open Dataset cannot be downloaded by a script: accept "
            "the licence at https://www.yelp.com/dataset/download, download "
            "the JSON archive (yelp_dataset.tar), extract "
            "'yelp_academic_dataset_review.json' from it and put that file "
            "(optionally gzipped, as .json.gz) at {path}. Then rerun "
            "`python -m diff4rec_jax.datasets.prepare --dataset=yelp "
            "--data_dir={data_dir}`. The paper's Yelp (S3-Rec's) keeps only "
            "reviews from 2019-01-01 on: add --since=2019-01-01 for that."),
        homepage="https://www.yelp.com/dataset"),
}


def output_paths(name: str, data_dir: str) -> dict:
  """Where `prepare` writes dataset `name`: data, stats and id maps."""
  fname = data.DATASET_FILES.get(name, f"{name}.txt.gz")
  return {
      "data": os.path.join(data_dir, fname),
      "stats": os.path.join(data_dir, f"{name}.stats.json"),
      "user_map": os.path.join(data_dir, f"{name}_user_map.tsv"),
      "item_map": os.path.join(data_dir, f"{name}_item_map.tsv"),
  }


def prepare_file(raw_path: str, fmt: str, out_path: str,
                 stats_path: Optional[str] = None, member: str = "",
                 min_user_actions: int = MIN_USER_ACTIONS,
                 min_item_actions: int = 0, since: Optional[str] = None,
                 user_map_path: Optional[str] = None,
                 item_map_path: Optional[str] = None,
                 name: str = "") -> dict:
  """Raw file -> pair-format file (+ stats JSON, id maps). Returns the stats.

  Every output is written atomically. `out_path` ending in .gz is gzipped.
  """
  t0 = time.time()
  raw = raw_lib.parse_raw(raw_path, fmt, member)
  proc = raw_lib.preprocess(raw, min_user_actions, min_item_actions, since)
  writers.write_pairs(out_path, proc.users, proc.items)
  if user_map_path:
    writers.write_id_map(user_map_path, "user_id\traw_user_id", proc.user_raw)
  if item_map_path:
    writers.write_id_map(item_map_path, "item_id\traw_item_id", proc.item_raw)
  stats = {"dataset": name or os.path.basename(out_path), **proc.stats,
           "file": os.path.basename(out_path), "raw_file": raw.source,
           "raw_format": fmt, "seconds": round(time.time() - t0, 2)}
  if stats_path:
    writers.write_json(stats_path, stats)
  logging.info("%s -> %s: %s", raw.source, out_path, proc.stats)
  return stats


def _existing(name: str, data_dir: str) -> Optional[str]:
  try:
    return data.resolve_path(name, data_dir)
  except DataError:
    return None


def raw_path(name: str, data_dir: str) -> str:
  """Where the raw file of dataset `name` is (to be) stored."""
  return os.path.join(data_dir, "raw", name, SOURCES[name].filename)


def ensure_dataset(name: str, data_dir: Optional[str] = None,
                   force: bool = False,
                   min_user_actions: int = MIN_USER_ACTIONS,
                   min_item_actions: int = 0, since: Optional[str] = None,
                   skip_checksum: bool = False, raw_file: str = "",
                   url: str = "", progress: bool = True) -> str:
  """Returns the pair-format file of dataset `name`, making it if missing.

  An existing file (as `data.resolve_path` finds it) is returned untouched
  unless `force`. Otherwise the raw file is taken from `raw_file`, or from
  `<data_dir>/raw/<name>/`, or downloaded there, and preprocessed into
  `<data_dir>/<data.DATASET_FILES[name]>` with `<name>.stats.json` and id
  maps beside it. 'synthetic-steam' is generated (see synthetic.py).

  Raises:
    DataError: unknown name, download failure, or (Yelp) the raw file must
      be placed by hand; the message says where.
  """
  data_dir = data_dir or data.default_data_dir()
  if not force:
    found = _existing(name, data_dir)
    if found:
      return found
  if name == "synthetic-steam":
    return synthetic.write_synthetic(data_dir)
  if name not in SOURCES:
    raise DataError(f"--dataset: unknown dataset {name!r}; expected one of "
                    f"{sorted(SOURCES) + ['synthetic-steam']}.")
  src = SOURCES[name]
  path = raw_file or raw_path(name, data_dir)
  if not raw_file and not os.path.isfile(path) and os.path.isfile(path + ".gz"):
    path += ".gz"
  if not os.path.isfile(path):
    if raw_file:
      raise DataError(f"--raw_file: {raw_file} not found.")
    if not (url or src.url):
      raise DataError(f"dataset {name!r} needs a manual download. " +
                      src.manual.format(path=os.path.abspath(path),
                                        data_dir=data_dir))
    download_lib.download(url or src.url, path, src.md5, src.sha256,
                          src.checksum_note, skip_checksum, progress=progress)
  elif src.url and not raw_file:
    download_lib.verify_checksum(path, src.md5, src.sha256, src.checksum_note,
                                 skip_checksum)
  elif raw_file and (src.md5 or src.sha256):
    logging.warning(
        "--raw_file %s: checksum not checked (a file given by hand may be "
        "another release of %s); the published file's %s is %s. Place it "
        "at %s instead, without --raw_file, to have it verified.", raw_file,
        name, "sha256" if src.sha256 else "md5", src.sha256 or src.md5,
        os.path.abspath(raw_path(name, data_dir)))
  out = output_paths(name, data_dir)
  stats = prepare_file(path, src.fmt, out["data"], out["stats"], src.member,
                       min_user_actions, min_item_actions, since,
                       out["user_map"], out["item_map"], name=name)
  logging.info("wrote %s (%s users, %s items, %s actions)", out["data"],
               stats["users"], stats["items"], stats["actions"])
  return out["data"]


def ensure_for_config(data_config) -> Optional[str]:
  """Fetches the dataset a `config.data` block names if it is missing.

  The step that runs before `data.load` in every entry that loads a run's
  data: a built-in dataset (`data.DATASET_FILES`) with no `data.path` and
  `data.download` true (the default) that is not found under `data.dir` is
  prepared by `ensure_dataset` (downloaded and preprocessed, or generated).
  Anything else is left to `data.load`, which raises the same errors as
  before (unknown name, missing explicit file, download off).

  Returns:
    The file it made, or None when there was nothing to fetch.
  Raises:
    DataError: as `ensure_dataset` (download failure, manual download).
  """
  name = data_config.name
  if (data_config.get("path") or not data_config.get("download", True) or
      name not in data.DATASET_FILES):
    return None
  data_dir = data_config.get("dir") or None
  if _existing(name, data_dir or data.default_data_dir()):
    return None
  # Missing: get it from the public source (the error says how if not).
  logging.info("dataset %s not found locally; preparing it", name)
  return ensure_dataset(name, data_dir)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------
def _define_flags():
  """Defines the command's flags on absl's global FLAGS."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_enum("dataset", None, sorted(SOURCES) + ["synthetic-steam"],
                    "Dataset to download and preprocess.")
  flags.DEFINE_string("data_dir", None, "Output folder (default "
                      "$DIFF4REC_DATA_DIR or ./data); raw files go to "
                      "<data_dir>/raw/<dataset>/.")
  flags.DEFINE_integer("min_user_actions", MIN_USER_ACTIONS,
                       "Users with fewer actions are removed (paper: 5).")
  flags.DEFINE_integer("min_item_actions", 0,
                       "Items with fewer actions are removed (0: keep all).")
  flags.DEFINE_string("since", "", "Drop actions before this date "
                      "(YYYY-MM-DD); S3-Rec's Yelp uses 2019-01-01.")
  flags.DEFINE_bool("force", False, "Rebuild even if the output exists.")
  flags.DEFINE_bool("skip_checksum", False, "Do not verify the raw file's "
                    "checksum (a warning is logged).")
  flags.DEFINE_string("raw_file", "", "Use this local raw file instead of "
                      "downloading.")
  flags.DEFINE_string("url", "", "Override the download URL (a mirror).")
  flags.mark_flag_as_required("dataset")


def main(argv) -> int:
  """Prepares `--dataset`; prints its file, or the error (exit status 1)."""
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  fl = flags.FLAGS
  try:
    path = ensure_dataset(
        fl.dataset, fl.data_dir or data.default_data_dir(), force=fl.force,
        min_user_actions=fl.min_user_actions,
        min_item_actions=fl.min_item_actions, since=fl.since or None,
        skip_checksum=fl.skip_checksum, raw_file=fl.raw_file, url=fl.url)
  except DataError as e:
    sys.stderr.write(f"error: {e}\n")
    return 1
  print(path)
  return 0


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)
