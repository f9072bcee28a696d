"""A self-contained export of a trained run, for serving.

    python -m diff4rec_jax.export --workdir=runs/ml1m --out=exports/ml1m

writes a new folder that `recommend.load` (and `python -m
diff4rec_jax.recommend --workdir=exports/ml1m`) reads without the training
data, the checkpoints or the configs/ folder:

  manifest.json   format version, dataset, model, best epoch and validation
                  metrics, package versions, and the sha256 and size of
                  every other file
  config.json     the run's resolved config
  params.npz      the best-validation parameters (flattened, '/' keys)
  histories.npz   the data's users and their whole sequences (user_ids,
                  indptr, items), for recommending by user id; left out
                  with --nohistories (then only new histories can be used)
  item_map.tsv    `item_id  raw_item_id`, when the dataset has an item map
  user_map.tsv    `user_id  raw_user_id`, when it has a user map

Loading checks every file against the manifest and refuses a missing file
or a checksum mismatch, naming the file. The folder is written under a
temporary name and renamed when complete; an existing folder is refused.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import sys
import time

from absl import logging
import flax.traverse_util
import jax
import ml_collections
import numpy as np

from diff4rec_jax import checkpointing
from diff4rec_jax import data as data_lib
from diff4rec_jax import models
from diff4rec_jax import recommender
from diff4rec_jax import serving_files

FORMAT = "diff4rec_jax-export"
VERSION = 1
PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "ml-collections",
            "orbax-checkpoint")


class ExportError(serving_files.RecommendError):
  """An export cannot be written or read; the message names the file."""


def versions() -> dict:
  out = {"python": platform.python_version()}
  for p in PACKAGES:
    try:
      out[p] = importlib.metadata.version(p)
    except importlib.metadata.PackageNotFoundError:
      out[p] = None
  return out


def _write_map(path: str, header: str, raw: np.ndarray) -> None:
  lines = [header] + [f"{i}\t{r}" for i, r in enumerate(raw, 1)]
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")


def export_run(r: recommender.Recommender, out_dir: str,
               histories: bool = True) -> dict:
  """Writes the export of a loaded run (`recommend.load(workdir)`) to
  `out_dir` (must not exist); returns the manifest."""
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir):
    raise ExportError(f"{out_dir}: already exists; choose a new --out (an "
                      "export is never overwritten).")
  tmp = f"{out_dir}.tmp{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump(r.config.to_dict(), f, indent=2, sort_keys=True)
    flat = flax.traverse_util.flatten_dict(jax.device_get(r.params), sep="/")
    np.savez(os.path.join(tmp, "params.npz"),
             **{k: np.asarray(v) for k, v in flat.items()})
    if histories and r.users is not None:
      np.savez(os.path.join(tmp, "histories.npz"),
               user_ids=np.asarray(r.users.user_ids),
               indptr=r.users.indptr, items=r.users.items)
    if r.item_raw is not None:
      _write_map(os.path.join(tmp, "item_map.tsv"), "item_id\traw_item_id",
                 r.item_raw)
    if r.user_raw is not None:
      _write_map(os.path.join(tmp, "user_map.tsv"), "user_id\traw_user_id",
                 r.user_raw)
    files = {f: {"sha256": checkpointing.file_sha256(os.path.join(tmp, f)),
                 "bytes": os.path.getsize(os.path.join(tmp, f))}
             for f in sorted(os.listdir(tmp))}
    manifest = {
        "format": FORMAT, "version": VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": {k: r.meta.get(k) for k in ("workdir", "data", "dataset",
                                              "best_epoch", "valid")},
        "model": r.config.model.name, "num_items": r.num_items,
        "num_users": None if r.users is None else len(r.users.user_ids),
        "versions": versions(), "files": files,
    }
    with open(os.path.join(tmp, "manifest.json"), "w") as f:
      json.dump(manifest, f, indent=2, sort_keys=True)
    os.replace(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return manifest


def verify(export_dir: str) -> dict:
  """The manifest of an export, after checking every file it lists."""
  mpath = os.path.join(export_dir, "manifest.json")
  try:
    with open(mpath) as f:
      manifest = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ExportError(f"{mpath}: unreadable ({e})") from None
  if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
    raise ExportError(f"{mpath}: not a {FORMAT} version {VERSION} manifest "
                      f"(format {manifest.get('format')!r}, version "
                      f"{manifest.get('version')!r})")
  for name in ("config.json", "params.npz"):
    if name not in manifest.get("files", {}):
      raise ExportError(f"{mpath}: lists no {name}")
  for name, info in manifest["files"].items():
    path = os.path.join(export_dir, name)
    if not os.path.isfile(path):
      raise ExportError(f"{path}: missing (listed in manifest.json)")
    got = checkpointing.file_sha256(path)
    if got != info["sha256"]:
      raise ExportError(f"{path}: sha256 {got} does not match manifest.json "
                        f"({info['sha256']}); the file was changed or "
                        "corrupted: export the run again.")
  now = versions()
  diff = {k: (v, now.get(k)) for k, v in manifest.get("versions", {}).items()
          if k != "python" and v != now.get(k)}
  if diff:
    logging.warning("%s: made with other package versions (export, here): "
                    "%s", export_dir, diff)
  return manifest


def load_export(export_dir: str) -> recommender.Recommender:
  """A Recommender from an export folder (checked by `verify`)."""
  manifest = verify(export_dir)
  files = manifest["files"]
  with open(os.path.join(export_dir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  num_items = int(manifest["num_items"])
  with np.load(os.path.join(export_dir, "params.npz"),
               allow_pickle=False) as z:
    params = flax.traverse_util.unflatten_dict(
        {k: z[k] for k in z.files}, sep="/")
  r_model = models.get_model(config.model, num_items, config.data.max_len)
  want = jax.eval_shape(lambda: r_model.init(
      jax.random.key(0), np.zeros((1, config.data.max_len), np.int32)
  )["params"])
  got = jax.tree.map(lambda x: (x.shape, str(x.dtype)), params)
  exp = jax.tree.map(lambda x: (x.shape, str(x.dtype)), want)
  if got != exp:
    raise ExportError(f"{os.path.join(export_dir, 'params.npz')}: the "
                      "parameters do not fit the model of config.json.")
  users = user_raw = item_raw = None
  if "item_map.tsv" in files:
    item_raw = serving_files.read_id_map(
        os.path.join(export_dir, "item_map.tsv"), num_items)
  if "user_map.tsv" in files:
    user_raw = serving_files.read_id_map(
        os.path.join(export_dir, "user_map.tsv"))
  if "histories.npz" in files:
    with np.load(os.path.join(export_dir, "histories.npz"),
                 allow_pickle=False) as z:
      users = recommender.Histories(z["user_ids"], z["indptr"], z["items"])
  meta = dict(manifest.get("source", {}), export=os.path.abspath(export_dir))
  return recommender.Recommender(config, params, num_items,
                                 item_raw=item_raw, users=users,
                                 user_raw=user_raw, meta=meta)


def main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  if len(argv) > 1:
    raise ExportError(f"unexpected arguments: {argv[1:]}")
  r = recommender.from_workdir(f.workdir, f.data_dir or None)
  m = export_run(r, f.out, histories=f.histories)
  logging.info("exported %s -> %s (%s; %s)", f.workdir, f.out,
               ", ".join(sorted(m["files"])),
               f"{sum(v['bytes'] for v in m['files'].values()) / 1e6:.1f} MB")


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("workdir", None, "The run's workdir.")
  flags.DEFINE_string("out", None, "The export folder to create.")
  flags.DEFINE_bool("histories", True, "Include the data's users and their "
                    "sequences (to recommend by user id).")
  flags.DEFINE_string("data_dir", "", "Data folder, if the run's data moved.")
  flags.mark_flags_as_required(["workdir", "out"])

  def _main(argv):
    checkpointing.quiet_orbax()
    try:
      main(argv)
    except (serving_files.RecommendError, data_lib.DataError) as e:
      logging.error("%s", e)
      sys.exit(f"error: {e}")
  app.run(_main)
