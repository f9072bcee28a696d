"""Generator phase: training speed, top-M generation time/memory, quality.

For each dataset, in two fresh subprocesses (so peak RSS is per stage):

1. `train`: runs `generator.run_generator_phase` for `--epochs` epochs
   (checkpoints in `<workroot>/<dataset>`), and reports seconds per epoch,
   users/s and the validation HR@10 / NDCG@10 of the generator (z_0 = mu,
   corrupted and denoised) against the VAE alone (decode mu), full ranking
   with the training prefix masked, ties pessimistic.
2. `generate`: restores the params and times top-M generation for all users
   (`generator.generate_topm`), cold (with compilation) and warm, with the
   peak RSS (`resource.getrusage(...).ru_maxrss`) before and after.

Datasets: ml-1m, beauty, yelp (from --data_dir) and synthetic-steam, a
SYNTHETIC Steam-scale set (281,428 users, 13,044 items, ~3.5M actions,
Zipf-like popularity) made in memory by `diff4rec_jax.datasets.synthetic`
(or, if that module is missing, by a small inline generator noted as such).
Quality numbers on synthetic data are meaningless and are not printed.

Usage:
  python benchmarks/generator_bench.py --datasets=ml-1m --epochs=10 \
      [--data_dir=/work/shared/data] [--workroot=/tmp/generator_bench] \
      [--set batch_size=512 --set latent_size=128 ...]
"""

import argparse
import ast
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DATASETS = ("ml-1m", "beauty", "yelp", "synthetic-steam")


def _peak_rss_mb() -> float:
  # Linux reports ru_maxrss in KiB.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
  try:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
  except (OSError, ValueError, IndexError):
    return float("nan")


def _inline_synthetic(seed: int = 0, scale: float = 1.0):
  """Fallback Steam-shaped set when datasets/synthetic.py is absent."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  nu, ni = int(281_428 * scale), max(20, int(13_044 * scale))
  lens = 5 + np.minimum(rng.geometric(1 / 8.4, nu) - 1, 2000)
  users = np.repeat(np.arange(1, nu + 1), lens)
  p = 1.0 / np.arange(1, ni + 1)
  items = rng.choice(np.arange(1, ni + 1), size=users.size, p=p / p.sum())
  return users, items


def load_dataset(name: str, data_dir: str, scale: float):
  # pylint: disable-next=g-import-not-at-top
  from diff4rec_jax import data as data_lib
  if name != "synthetic-steam":
    return data_lib.read_interactions(
        data_lib.resolve_path(name, data_dir), name), ""
  try:
    # pylint: disable-next=g-import-not-at-top
    from diff4rec_jax.datasets import synthetic
    s = synthetic.generate(scale=scale, seed=0)
    users, items, note = s.users, s.items, "diff4rec_jax.datasets.synthetic"
  except ImportError:
    users, items = _inline_synthetic(0, scale)
    note = ("inline fallback generator (diff4rec_jax.datasets.synthetic "
            "missing)")
  return data_lib.from_interactions(users, items, "synthetic-steam"), note


def make_config(args):
  from configs import base  # pylint: disable=g-import-not-at-top
  c = base.get_config()
  c.generator.epochs = args.epochs
  c.generator.checkpoint_every = 0
  for kv in args.set or []:
    k, v = kv.split("=", 1)
    try:
      v = ast.literal_eval(v)
    except (ValueError, SyntaxError):
      pass
    c.generator[k] = v
  return c


def stage_train(args) -> dict:
  from absl import logging  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import generator  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  ds, note = load_dataset(args.dataset, args.data_dir, args.synthetic_scale)
  c = make_config(args)
  synthetic = args.dataset == "synthetic-steam"
  c.generator.eval_at_end = not synthetic
  workdir = os.path.join(args.workroot, args.dataset)
  shutil.rmtree(workdir, ignore_errors=True)
  t0 = time.time()
  path = generator.run_generator_phase(c, ds, workdir)
  total = time.time() - t0
  recs = [json.loads(x) for x in open(
      os.path.join(workdir, generator.METRICS_FILE))]
  train = [r for r in recs if r["kind"] == "train"]
  ev = [r for r in recs if r["kind"] == "eval"]
  warm = train[1:] or train
  return {
      "dataset": args.dataset, "note": note, "stats": ds.stats(),
      "epochs": len(train), "phase_seconds": round(total, 1),
      "first_epoch_seconds": round(train[0]["seconds"], 2) if train else None,
      "epoch_seconds": round(sum(r["seconds"] for r in warm) / len(warm), 2)
                       if warm else None,
      "train_users_per_s": round(sum(r["users_per_s"] for r in warm) /
                                 len(warm)) if warm else None,
      "final_loss": train[-1]["loss"] if train else None,
      "valid": None if synthetic or not ev else {
          k: ev[-1][k] for k in ("generator", "vae")},
      "topm_file": path, "peak_rss_mb": round(_peak_rss_mb()),
  }


def stage_generate(args) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import generator  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  ds, _ = load_dataset(args.dataset, args.data_dir, args.synthetic_scale)
  c = make_config(args)
  params = generator.restore_params(c, ds, os.path.join(args.workroot,
                                                        args.dataset))
  jax.block_until_ready(params)
  rss_before = _current_rss_mb()
  t0 = time.time()
  items, probs = generator.generate_topm(c, params, ds)
  cold = time.time() - t0
  t0 = time.time()
  items, probs = generator.generate_topm(c, params, ds)
  warm = time.time() - t0
  return {
      "dataset": args.dataset, "users": ds.num_users,
      "items": ds.num_items, "top_m": int(items.shape[1]),
      "infer_batch_size": c.generator.infer_batch_size,
      "cold_seconds": round(cold, 2), "warm_seconds": round(warm, 2),
      "users_per_s_warm": round(ds.num_users / warm),
      "rss_mb_before": round(rss_before),
      "peak_rss_mb": round(_peak_rss_mb()),
      "output_mb": round((items.nbytes + probs.nbytes) / 2**20, 1),
  }


def run_stage(args, dataset: str, stage: str) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), f"--stage={stage}",
         f"--dataset={dataset}", f"--epochs={args.epochs}",
         f"--data_dir={args.data_dir}", f"--workroot={args.workroot}",
         f"--synthetic_scale={args.synthetic_scale}"]
  cmd += [f"--set={kv}" for kv in args.set or []]
  out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                       cwd=ROOT)
  for line in out.stdout.splitlines()[::-1]:
    if line.startswith("RESULT "):
      return json.loads(line[len("RESULT "):])
  raise RuntimeError(f"{stage} {dataset}: no result\n{out.stdout}\n"
                     f"{out.stderr[-3000:]}")


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--datasets", default="ml-1m",
                 help=f"comma-separated, from {DATASETS}")
  p.add_argument("--epochs", type=int, default=2)
  p.add_argument("--data_dir", default=os.environ.get(
      "DIFF4REC_DATA_DIR", "/work/shared/data"))
  p.add_argument("--workroot", default="/tmp/generator_bench")
  p.add_argument("--synthetic_scale", type=float, default=1.0)
  p.add_argument("--set", action="append",
                 help="generator field override, e.g. --set batch_size=512")
  p.add_argument("--stage", choices=("train", "generate"), default=None)
  p.add_argument("--dataset", default=None)
  args = p.parse_args()
  if args.stage:
    fn = stage_train if args.stage == "train" else stage_generate
    print("RESULT " + json.dumps(fn(args)), flush=True)
    return

  import jax  # pylint: disable=g-import-not-at-top
  print(f"# machine: {_cpu_name()}, {os.cpu_count()} CPUs, "
        f"jax {jax.__version__} on {jax.devices()[0].platform}")
  print(f"# generator overrides: epochs={args.epochs} {args.set or ''}")
  rows = []
  for name in args.datasets.split(","):
    tr = run_stage(args, name, "train")
    print("train    " + json.dumps(tr), flush=True)
    ge = run_stage(args, name, "generate")
    print("generate " + json.dumps(ge), flush=True)
    rows.append((tr, ge))
  print("\n| dataset | users | items | s/epoch | train users/s | top-M cold s "
        "| top-M warm s | RSS MB before -> peak | valid HR@10 gen / "
        "VAE | valid NDCG@10 gen / VAE |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for tr, ge in rows:
    v = tr["valid"]
    hr = (f"{v['generator']['HR@10']:.4f} / {v['vae']['HR@10']:.4f}"
          if v else "n/a (synthetic)")
    nd = (f"{v['generator']['NDCG@10']:.4f} / {v['vae']['NDCG@10']:.4f}"
          if v else "n/a (synthetic)")
    print(f"| {tr['dataset']} | {ge['users']:,} | {ge['items']:,} | "
          f"{tr['epoch_seconds']} | {tr['train_users_per_s']:,} | "
          f"{ge['cold_seconds']} | {ge['warm_seconds']} | "
          f"{ge['rss_mb_before']:,} -> {ge['peak_rss_mb']:,} | {hr} | "
          f"{nd} |")


if __name__ == "__main__":
  main()
