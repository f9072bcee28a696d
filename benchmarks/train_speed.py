"""Training and evaluation speed of the recommender on ML-1M.

Prints, as medians of several timed repeats:
* training sequences/s of SASRec in the original setting (BCE, one negative,
  hidden 50, 2 blocks, 1 head, max_len 200, batch 128, dropout 0.2) and in
  the CE setting (hidden 64, full softmax);
* the achieved FLOP/s of each train step (XLA's cost analysis of the
  compiled step) as a fraction of a float32 [2048 x 2048] matmul measured in
  the same process;
* the time to evaluate all 6,040 ML-1M users with full ranking.

Usage:
  DIFF4REC_DATA_DIR=../shared/data python benchmarks/train_speed.py \
      [--steps=20] [--repeats=5] [--model=sasrec]
"""

import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

from configs import ml1m
from diff4rec_jax import data as data_lib
from diff4rec_jax import models
from diff4rec_jax import sharding
from diff4rec_jax import train


def matmul_flops_per_s(n=2048, repeats=10):
  x = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(x).block_until_ready()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    f(x).block_until_ready()
    times.append(time.perf_counter() - t)
  return 2 * n ** 3 / statistics.median(times)


def step_flops(jitted, *args):
  cost = jitted.lower(*args).compile().cost_analysis()
  if isinstance(cost, list):
    cost = cost[0]
  return float(cost.get("flops", float("nan"))) if cost else float("nan")


def bench_train(config, ds, steps, repeats, mesh):
  tc = config.train
  model = models.get_model(config.model, ds.num_items, config.data.max_len)
  tx = train.make_optimizer(tc)
  state = sharding.replicate(
      train.init_state(model, tx, jax.random.key(0), config.data.max_len),
      mesh)
  step = train.make_train_step(model, tx, tc.loss, ds.num_items)
  inputs, targets = ds.train_arrays(config.data.max_len)
  rows = np.flatnonzero((targets > 0).any(axis=1))
  widths = train.bucket_widths(config)
  batches = [sharding.shard_batch(b, mesh) for b in train.train_batches(
      inputs, targets, rows, tc.batch_size, 0, 1, widths)]
  batches = batches[:steps]
  for b in batches:     # compile every width before timing
    state, m = step(state, b, jax.random.key(1))
  key = jax.random.key(1, impl=config.rng_impl)
  full = next(train.train_batches(inputs, targets, rows, tc.batch_size, 0, 1,
                                  np.array([config.data.max_len])))
  flops = step_flops(step, state, sharding.shard_batch(full, mesh), key)
  state, m = step(state, batches[0], key)       # compile
  m["loss"].block_until_ready()
  rates = []
  seqs = sum(int((np.asarray(b["targets"]) > 0).any(axis=1).sum())
             for b in batches)
  for _ in range(repeats):
    t = time.perf_counter()
    for b in batches:
      state, m = step(state, b, key)
    m["loss"].block_until_ready()
    dt = time.perf_counter() - t
    rates.append(seqs / dt)
  rate = statistics.median(rates)
  # FLOPs: the full-width step's count scaled by the tokens actually fed.
  tokens = sum(b["inputs"].shape[1] for b in batches) / len(batches)
  flops *= tokens / config.data.max_len
  return rate, flops * rate / tc.batch_size, rates


def bench_eval(config, ds, repeats, mesh):
  tc = config.train
  model = models.get_model(config.model, ds.num_items, config.data.max_len)
  params = model.init(jax.random.key(0), jnp.zeros((1, config.data.max_len),
                                                   jnp.int32))["params"]
  params = sharding.replicate(params, mesh)
  eval_step = train.make_eval_step(model, ds.num_items, tc.eval_item_chunk,
                                   tc.mask_history)
  evalset = train.EvalSet.build(ds, "test", config.data.max_len)
  widths = train.bucket_widths(config)
  train.evaluate(eval_step, params, evalset, tc.eval_batch_size, widths, mesh)
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    train.evaluate(eval_step, params, evalset, tc.eval_batch_size, widths,
                   mesh)
    times.append(time.perf_counter() - t)
  return statistics.median(times), times


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--model", default="sasrec")
  p.add_argument("--only", default="", help="bce|ce|eval (default: all)")
  args = p.parse_args()
  mesh = sharding.make_mesh()
  cfg = ml1m.get_config()
  cfg.data.dir = os.environ.get("DIFF4REC_DATA_DIR", "../shared/data")
  ds = data_lib.load(cfg.data)
  print(f"machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, jax {jax.__version__}, devices "
        f"{jax.devices()}")
  peak = matmul_flops_per_s()
  print(f"float32 2048^3 matmul: {peak / 1e9:.1f} GFLOP/s")

  settings = {
      "bce": dict(loss="bce", hidden=50, dropout=0.2),
      "ce": dict(loss="ce", hidden=64, dropout=0.2),
  }
  for name, s in settings.items():
    if args.only and args.only != name:
      continue
    c = ml1m.get_config()
    c.model.name = args.model
    c.train.loss, c.model.hidden, c.model.dropout = (s["loss"], s["hidden"],
                                                     s["dropout"])
    c.model.num_heads = 1
    rate, fps, rates = bench_train(c, ds, args.steps, args.repeats, mesh)
    print(f"train {args.model} {name:3s} (hidden {s['hidden']}, L 200, batch "
          f"128): {rate:.0f} seq/s median of {args.repeats} "
          f"[{', '.join(f'{r:.0f}' for r in rates)}]; "
          f"{fps / 1e9:.1f} GFLOP/s = {fps / peak:.2f} of matmul peak")
  if not args.only or args.only == "eval":
    c = ml1m.get_config()
    c.model.name = args.model
    med, times = bench_eval(c, ds, args.repeats, mesh)
    print(f"full-ranking eval of all {ds.num_users} users (hidden 64, L 200, "
          f"{ds.num_items} items, history masked): {med:.2f} s median "
          f"[{', '.join(f'{t:.2f}' for t in times)}]")


if __name__ == "__main__":
  main()
