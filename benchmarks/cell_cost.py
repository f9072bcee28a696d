"""Minutes per grid cell, by dataset, setting and loss, on this machine.

Short timed runs of the real code give the seconds of:
* a training epoch in mode `base`, and in mode `aug` (originals plus one
  batch of copies per step; the copies come from `augment.candidates=
  uniform`, which costs the training loop what generator candidates cost,
  without training a generator here),
* one validation evaluation (full ranking of every user),
* a generator epoch and the generator's top-M inference.

Each is the median over the second half of one run's epochs (the first
ones compile: once per pair of original and copy batch widths). A cell
is then projected as

  base cell  = E x base epoch + (E / eval_every) x evaluation
  aug cell   = generator (epochs x epoch + inference) + warm-up
               (warmup_epochs x base epoch) + E x aug epoch
               + (E / eval_every) x evaluation

with E = `--cell_epochs` (default: the config's num_epochs, the cap; early
stopping usually ends sooner, so these are upper bounds). `diff4rec` costs
what `aug` costs; the popular/uniform controls cost an aug cell without the
generator. Background jobs distort the figures: run on a quiet machine.

  DIFF4REC_DATA_DIR=../shared/data python benchmarks/cell_cost.py \
      [--datasets=beauty,yelp,ml-1m] [--settings=paper,strong,sampled] \
      [--epochs=6] [--generator_epochs=2] [--cell_epochs=0] \
      [--overrides="--config.train.negative_sampler=popularity ..."] \
      [--base_only]

Settings: paper = configs/paper.py:<ds> (BCE, one negative); strong =
configs/<ds>.py (full-softmax CE); sampled = strong with
train.loss=sampled_ce (train.num_negatives, uniform). `--overrides`
changes config fields in every setting, with reproduce.py's syntax.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import logging  # pylint: disable=g-import-not-at-top

from benchmarks import machine  # pylint: disable=g-import-not-at-top
from benchmarks import grid  # pylint: disable=g-import-not-at-top
from diff4rec_jax import data as data_lib  # pylint: disable=g-import-not-at-top
from diff4rec_jax import generator  # pylint: disable=g-import-not-at-top
from diff4rec_jax import pool as pool_lib  # pylint: disable=g-import-not-at-top
from diff4rec_jax import train  # pylint: disable=g-import-not-at-top
from diff4rec_jax.datasets import prepare  # pylint: disable=g-import-not-at-top

SETTINGS = ("paper", "strong", "sampled")


def load_config(dataset: str, setting: str, overrides: str = ""):
  """The cell config of `dataset` in `setting` (see the module docstring),
  with `overrides` ('--config.a.b=v ...', as reproduce.py's) applied.

  Raises:
    ValueError: a malformed override, an unknown field or a bad value.
  """
  c = grid.load_config(dataset, "paper" if setting == "paper" else "strong")
  if setting == "sampled":
    c.train.loss = "sampled_ce"
  grid.apply_overrides(c, grid.parse_overrides(overrides))
  c.data.dir = os.environ.get("DIFF4REC_DATA_DIR", "")
  return c


def _epoch_times(workdir: str, epochs: int):
  """(median train-epoch seconds, median evaluation seconds) over the
  second half of the epochs: the first ones compile the step once per pair
  of (original, copy) batch widths they meet, which a long run amortizes."""
  first = epochs // 2 + 1
  train_s, eval_s = [], []
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      r = json.loads(line)
      if "train_epoch_seconds" in r and r["epoch"] >= first:
        train_s.append(r["train_epoch_seconds"])
      if "eval_seconds" in r and r["epoch"] >= first:
        eval_s.append(r["eval_seconds"])
  return statistics.median(train_s), statistics.median(eval_s)


def time_recommender(config, ds, mode: str, epochs: int):
  """(epoch seconds, evaluation seconds) of `epochs` epochs in `mode`."""
  c = config.copy_and_resolve_references()
  c.mode = mode
  c.train.num_epochs = epochs
  c.train.eval_every = 1
  c.train.patience = epochs + 1
  c.train.checkpoint_every = epochs
  with tempfile.TemporaryDirectory() as wd:
    pool = None
    if mode == "aug":
      c.augment.candidates = "uniform"
      cand, prob = pool_lib.control_candidates(c, ds)
      # 'aug' never reads the similarities: any embeddings will do.
      emb = np.zeros((ds.num_items + 1, 8), np.float32)
      pool = pool_lib.build_pool(c, ds, wd, cand, prob, emb)
    train.train_recommender(c, ds, wd, pool=pool)
    return _epoch_times(wd, epochs)


def time_generator(config, ds, epochs: int):
  """(seconds per generator epoch, seconds of the top-M inference)."""
  c = config.copy_and_resolve_references()
  c.generator.epochs = epochs
  c.generator.eval_at_end = False
  with tempfile.TemporaryDirectory() as wd:
    t0 = time.time()
    generator.run_generator_phase(c, ds, wd)
    total = time.time() - t0
    with open(os.path.join(wd, generator.METRICS_FILE)) as f:
      recs = [json.loads(l) for l in f if l.strip()]
  secs = [r["seconds"] for r in recs if r.get("kind") == "train"]
  return statistics.median(secs[1:] or secs), total - sum(secs)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--datasets", default="beauty,yelp,ml-1m")
  p.add_argument("--settings", default=",".join(SETTINGS))
  p.add_argument("--epochs", type=int, default=6)
  p.add_argument("--generator_epochs", type=int, default=2)
  p.add_argument("--cell_epochs", type=int, default=0,
                 help="epochs of a projected cell; 0 = the config's cap")
  p.add_argument("--overrides", default="",
                 help="'--config.a.b=v ...' for every setting, as "
                 "reproduce.py's")
  p.add_argument("--base_only", action="store_true",
                 help="time the base epoch and the evaluation only (no aug "
                 "epoch, no generator): to compare losses")
  args = p.parse_args()
  logging.set_verbosity(logging.WARNING)
  import jax  # pylint: disable=g-import-not-at-top
  print(f"machine: {machine.cpu_description()}; {jax.devices()}")
  print(f"command: {' '.join(sys.argv)}\n")
  print("| dataset | setting (loss) | base epoch s | aug epoch s | aug / base "
        "| eval s | generator epoch s | inference s | E | base cell min | "
        "aug cell min |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for dataset in args.datasets.split(","):
    gen = None
    for setting in args.settings.split(","):
      try:
        c = load_config(dataset, setting, args.overrides)
      except ValueError as e:
        raise SystemExit(f"--overrides: {e}")
      prepare.ensure_for_config(c.data)
      ds = data_lib.load(c.data)
      base_s, eval_s = time_recommender(c, ds, "base", args.epochs)
      e = args.cell_epochs or c.train.num_epochs
      evals = e / c.train.eval_every * eval_s
      base_cell = e * base_s + evals
      # Aug epoch, aug / base, generator epoch, inference, aug cell minutes.
      aug = ["—"] * 5
      if not args.base_only:
        aug_s, _ = time_recommender(c, ds, "aug", args.epochs)
        if gen is None:   # the generator is the same in every setting
          gen = time_generator(c, ds, args.generator_epochs)
        aug_cell = (c.generator.epochs * gen[0] + gen[1]
                    + c.augment.warmup_epochs * base_s + e * aug_s + evals)
        aug = [f"{aug_s:.1f}", f"x{aug_s / base_s:.2f}", f"{gen[0]:.1f}",
               f"{gen[1]:.1f}", f"{aug_cell / 60:.0f}"]
      print(f"| {dataset} | {setting} ({c.train.loss}) | {base_s:.1f} | "
            f"{aug[0]} | {aug[1]} | {eval_s:.1f} | {aug[2]} | {aug[3]} | "
            f"{e} | {base_cell / 60:.0f} | {aug[4]} |", flush=True)


if __name__ == "__main__":
  main()
