"""Full-ranking evaluation of a trained SASRec in float32 and bfloat16.

Restores the best checkpoint of a finished (or running) training workdir,
evaluates every user of the test and validation splits with the model's
matmul operands in float32 and in bfloat16 (`config.model.dtype`; the
ranking product itself stays float32), and prints, from one process:
* the metrics of both and their differences (what bfloat16 costs in
  quality: the same parameters, only the arithmetic differs);
* the evaluation time of each, medians of `--repeats` interleaved repeats,
  and their ratio.

Usage:
  DIFF4REC_DATA_DIR=../shared/data python benchmarks/eval_dtype.py \
      /work/runs/ml1m_port [--repeats=5] [--cpu_devices=-1]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import ml_collections

from diff4rec_jax import data as data_lib
from diff4rec_jax import metrics as metrics_lib
from diff4rec_jax import models
from diff4rec_jax import sharding
from diff4rec_jax import input_pipeline
from diff4rec_jax import recommender
from diff4rec_jax import steps
from diff4rec_jax import train
from diff4rec_jax.datasets import prepare

DTYPES = ("float32", "bfloat16")


def main():
  p = argparse.ArgumentParser()
  p.add_argument("workdir")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--cpu_devices", type=int, default=-1)
  args = p.parse_args()
  with open(os.path.join(args.workdir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  config.data.dir = os.environ.get("DIFF4REC_DATA_DIR", config.data.dir)
  tc = config.train
  n_cpu = args.cpu_devices
  if n_cpu == -1:
    n_cpu = sharding.auto_cpu_devices([tc.batch_size, tc.eval_batch_size])
  sharding.split_cpu(n_cpu)
  mesh = sharding.make_mesh()
  prepare.ensure_for_config(config.data)
  ds = data_lib.load(config.data)
  print(f"machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, jax {jax.__version__}, "
        f"{mesh.devices.size} device(s); workdir {args.workdir}")
  params, meta = recommender.restore_best_params(config, ds, args.workdir)
  print(f"best checkpoint: {meta}")
  params = sharding.replicate(params, mesh)
  widths = input_pipeline.bucket_widths(config, "eval")
  eval_steps = {}
  for dt in DTYPES:
    config.model.dtype = dt
    model = models.get_model(config.model, ds.num_items, config.data.max_len)
    micro = steps.micro_batcher(tc.micro_batch, tc.eval_batch_size,
                                mesh.devices.size)
    eval_steps[dt] = steps.make_eval_step(model, ds.num_items,
                                          tc.eval_item_chunk,
                                          tc.mask_history, micro)
  for split in ("test", "valid"):
    evalset = input_pipeline.EvalSet.build(ds, split, config.data.max_len)
    res = {dt: train.evaluate(eval_steps[dt], params, evalset,
                              tc.eval_batch_size, widths, mesh)
           for dt in DTYPES}
    for k in metrics_lib.METRIC_NAMES:
      a, b = res["float32"][k], res["bfloat16"][k]
      print(f"{split} {k:8s} float32 {a:.4f}  bfloat16 {b:.4f}  "
            f"diff {b - a:+.4f}")
  evalset = input_pipeline.EvalSet.build(ds, "test", config.data.max_len)
  times = {dt: [] for dt in DTYPES}
  for _ in range(args.repeats):
    for dt in DTYPES:
      t = time.perf_counter()
      train.evaluate(eval_steps[dt], params, evalset, tc.eval_batch_size,
                     widths, mesh)
      times[dt].append(time.perf_counter() - t)
  for dt in DTYPES:
    print(f"eval all {ds.num_users} test users, {dt}: "
          f"{statistics.median(times[dt]):.2f} s median of {args.repeats} "
          f"[{', '.join(f'{t:.2f}' for t in times[dt])}]")
  print(f"ratio float32 / bfloat16: "
        f"{statistics.median(times['float32']) / statistics.median(times['bfloat16']):.2f}")


if __name__ == "__main__":
  main()
