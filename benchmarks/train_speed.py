"""Training and evaluation speed of the recommender on ML-1M.

Prints, as medians of several timed repeats:
* training sequences/s of SASRec in the original setting (BCE, one negative,
  hidden 50, 2 blocks, 1 head, max_len 200, batch 128, dropout 0.2, shared
  attention-dropout mask) and in the CE setting (configs/ml1m.py: hidden 64,
  full softmax, dropout 0.1, attention-dropout mask per row);
* the achieved FLOP/s of each train step (XLA's cost analysis of the
  compiled step) as a fraction of a float32 [2048 x 2048] matmul measured in
  the same process;
* the time to evaluate all 6,040 ML-1M users with full ranking;
* for every repeat, the share of the host's CPU time the hypervisor stole
  (Linux /proc/stat 'steal'; on a shared virtual machine the repeats that
  saw steal ran on less than the machine's cores), and the median of the
  repeats that saw under 1% ("quiet repeats"), beside the plain median.

Settings compared in one process (repeats interleaved, ratios to the first):
every `--micro` value (config.train.micro_batch) x every `--attn_blocks`
value (config.model.attn_blocks, SASRec's causal query blocks) x every
`--dropout_rng` value (config.model.dropout_rng, how dropout masks are
drawn) x every `--dtype` value (config.model.dtype, the matmul operands)
x every `--length_buckets` set (sets separated by ';'; each is used as
config.train.length_buckets for training and as .eval_length_buckets for
evaluation) x every `--ynn` value (XLA:CPU's YNNPACK fusions: 'project'
= off in the BCE train step (`sharding.without_ynn`), on in the CE one
and in evaluation; 'off' / 'on' = in every step). The defaults of the last
five are the project's.

Usage:
  DIFF4REC_DATA_DIR=../shared/data python benchmarks/train_speed.py \
      [--steps=0] [--length_buckets='32,64,128;16,32,48,64,96,128,160'] \
      [--repeats=5] \
      [--model=sasrec] [--micro=0,-1] \
      [--attn_blocks=1,4] [--dropout_rng=hash,prng] \
      [--dtype=float32,bfloat16] [--ynn=project,on] [--cpu_devices=-1]

`--cpu_devices` (config.cpu_devices) is fixed per process: compare values in
separate runs.
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

from benchmarks import machine
from configs import ml1m
from diff4rec_jax import data as data_lib
from diff4rec_jax import models
from diff4rec_jax import sharding
from diff4rec_jax import input_pipeline
from diff4rec_jax import steps
from diff4rec_jax import train
from diff4rec_jax.datasets import prepare


def matmul_flops_per_s(mesh, n=2048, repeats=10):
  """float32 [n, n] x [n, n] FLOP/s over all devices of `mesh` (rows of the
  left factor sharded over them, as the batches are)."""
  x = jax.device_put(jnp.ones((n, n), jnp.float32),
                     sharding.batch_sharding(mesh))
  y = sharding.replicate(jnp.ones((n, n), jnp.float32), mesh)
  f = jax.jit(lambda a, b: a @ b)
  f(x, y).block_until_ready()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    f(x, y).block_until_ready()
    times.append(time.perf_counter() - t)
  return 2 * n ** 3 / statistics.median(times)


def step_flops(jitted, mesh, *args):
  """FLOPs of one call: XLA's cost analysis counts one device's partition."""
  cost = jitted.lower(*args).compile().cost_analysis()
  if isinstance(cost, list):
    cost = cost[0]
  flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
  return flops * mesh.devices.size


def _model(config, num_items, variant):
  """The recommender with variant = (micro_batch, attn_blocks, dropout_rng,
  dtype, length_buckets, ynn)."""
  c = config.copy_and_resolve_references()
  c.model.attn_blocks = variant[1]
  c.model.dropout_rng = variant[2]
  c.model.dtype = variant[3]
  return models.get_model(c.model, num_items, c.data.max_len)


def _options(variant):
  """XLA compiler options of a variant's steps: None = the project's (on
  CPU: YNNPACK fusions off in the BCE train step, XLA's defaults in the CE
  one and in evaluation); 'on' = XLA's defaults; 'off' = YNNPACK fusions
  off."""
  return {"project": None, "on": {},
          "off": sharding.without_ynn()}[variant[5]]


def bench_train(config, ds, steps, repeats, mesh, variants):
  """Interleaved timed repeats of each (micro_batch, attn_blocks,
  dropout_rng, dtype, length_buckets, ynn) variant.

  Returns {variant: (median seq/s, FLOP/s achieved, [seq/s per repeat],
  [host steal share per repeat, or None])}.
  """
  tc = config.train
  tx = steps.make_optimizer(tc)
  inputs, targets = ds.train_arrays(config.data.max_len)
  rows = np.flatnonzero((targets > 0).any(axis=1))
  key = jax.random.key(1, impl=config.rng_impl)
  full = sharding.shard_batch(next(input_pipeline.train_batches(
      inputs, targets, rows, tc.batch_size, 0, 1,
      np.array([config.data.max_len]))), mesh)
  batches, seqs, tokens = {}, {}, {}   # per length-bucket set
  for buckets in {mb[4] for mb in variants}:
    c = config.copy_and_resolve_references()
    if buckets is not None:
      c.train.length_buckets = buckets
    widths = input_pipeline.bucket_widths(c)
    bs = [sharding.shard_batch(b, mesh) for b in input_pipeline.train_batches(
        inputs, targets, rows, tc.batch_size, 0, 1, widths)]
    if steps > 0:
      bs = bs[:steps]
    batches[buckets] = bs
    seqs[buckets] = sum(int((np.asarray(b["targets"]) > 0).any(axis=1).sum())
                        for b in bs)
    # Mean batch width per sequence fed (FLOPs scale with it).
    tokens[buckets] = sum(b["inputs"].shape[1] for b in bs) / len(bs)
  steps_, states, flops = {}, {}, {}
  for mb in variants:
    model = _model(config, ds.num_items, mb)
    m_rows = steps.micro_batcher(mb[0], tc.batch_size, mesh.devices.size)
    steps_[mb] = steps.make_train_step(model, tx, tc.loss, ds.num_items,
                                       micro_batch=m_rows,
                                       compiler_options=_options(mb))
    states[mb] = sharding.replicate(
        steps.init_state(model, tx, jax.random.key(0), config.data.max_len),
        mesh)
    for b in batches[mb[4]]:     # compile every width before timing
      states[mb], m = steps_[mb](states[mb], b, key)
    m["loss"].block_until_ready()
    if not flops:
      # FLOPs of the first variant, counted on its step compiled without
      # micro-batching (XLA's cost analysis counts a loop body once, so a
      # micro-batched step would read batch / micro times too low): the
      # full-width count, scaled below by each variant's mean width.
      whole = steps.make_train_step(model, tx, tc.loss, ds.num_items,
                                    micro_batch=0)
      flops[0] = step_flops(whole, mesh, states[mb], full, key)
  rates = {mb: [] for mb in variants}
  steal = {mb: [] for mb in variants}
  for _ in range(repeats):
    for mb in variants:
      host = machine.cpu_times()
      t = time.perf_counter()
      for b in batches[mb[4]]:
        states[mb], m = steps_[mb](states[mb], b, key)
      m["loss"].block_until_ready()
      rates[mb].append(seqs[mb[4]] / (time.perf_counter() - t))
      steal[mb].append(machine.steal_fraction(host, machine.cpu_times()))
  out = {}
  for mb in variants:
    rate = statistics.median(rates[mb])
    per_batch = flops[0] * tokens[mb[4]] / config.data.max_len
    out[mb] = (rate, per_batch * rate / tc.batch_size, rates[mb], steal[mb])
  return out


def bench_eval(config, ds, repeats, mesh, variants):
  """{variant: (median s, [s per repeat], [host steal share per repeat])}
  for evaluating all test users."""
  tc = config.train
  model = _model(config, ds.num_items, variants[0])
  params = model.init(jax.random.key(0), jnp.zeros((1, config.data.max_len),
                                                   jnp.int32))["params"]
  params = sharding.replicate(params, mesh)
  evalset = input_pipeline.EvalSet.build(ds, "test", config.data.max_len)
  widths = {}
  for buckets in {mb[4] for mb in variants}:
    c = config.copy_and_resolve_references()
    if buckets is not None:
      c.train.length_buckets = c.train.eval_length_buckets = buckets
    widths[buckets] = input_pipeline.bucket_widths(c, "eval")
  steps_, times = {}, {mb: [] for mb in variants}
  steal = {mb: [] for mb in variants}
  for mb in variants:   # the variants share the params (same param tree)
    model = _model(config, ds.num_items, mb)
    m_rows = steps.micro_batcher(mb[0], tc.eval_batch_size,
                                 mesh.devices.size)
    steps_[mb] = steps.make_eval_step(model, ds.num_items, tc.eval_item_chunk,
                                      tc.mask_history, m_rows, _options(mb))
    train.evaluate(steps_[mb], params, evalset, tc.eval_batch_size,
                   widths[mb[4]], mesh)
  for _ in range(repeats):
    for mb in variants:
      host = machine.cpu_times()
      t = time.perf_counter()
      train.evaluate(steps_[mb], params, evalset, tc.eval_batch_size,
                     widths[mb[4]], mesh)
      times[mb].append(time.perf_counter() - t)
      steal[mb].append(machine.steal_fraction(host, machine.cpu_times()))
  return {mb: (statistics.median(times[mb]), times[mb], steal[mb])
          for mb in variants}


QUIET = 0.01   # a repeat is "quiet" if the host stole < 1% of its CPU time


def steal_summary(values, steals, unit, fmt="{:.0f}"):
  """'; host steal per repeat [..%]; median of the k quiet repeats: v'
  ('' where steal cannot be read)."""
  if any(x is None for x in steals):
    return ""
  quiet = [v for v, x in zip(values, steals) if x < QUIET]
  text = ("; host steal per repeat [" +
          ", ".join(f"{100 * x:.1f}%" for x in steals) + "]")
  if quiet:
    text += (f"; median of the {len(quiet)} quiet repeat(s) (steal < "
             f"{100 * QUIET:.0f}%): {fmt.format(statistics.median(quiet))}"
             f"{unit}")
  else:
    text += "; no quiet repeat"
  return text


def _variant_name(variant):
  mb, blocks, rng, dtype, buckets, ynn = variant
  name = {0: "one pass", -1: "micro auto"}.get(mb, f"micro {mb}")
  name += f", ynn {ynn}"
  if blocks != 1:
    name += f", attn_blocks {blocks}"
  if buckets is None:
    return name + f", dropout {rng}, {dtype}, the config's buckets"
  return name + (f", dropout {rng}, {dtype}, buckets "
                 f"{','.join(map(str, buckets)) or 'none'}")


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--steps", type=int, default=0,
                 help="training steps per timed repeat: the first N batches "
                 "of epoch 1; 0 = the whole epoch (its true mix of bucket "
                 "widths; the first batches are wider than the average)")
  p.add_argument("--length_buckets", default=None,
                 help="bucket width sets compared likewise, each used for "
                 "training and evaluation batches (comma lists separated by "
                 "';'; an empty set = every batch at max_len); default: "
                 "configs/ml1m.py's length_buckets for training and "
                 "eval_length_buckets for evaluation")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--model", default="sasrec")
  p.add_argument("--only", default="",
                 help="comma list of bce|ce|eval (default: all)")
  p.add_argument("--micro", default="0,-1",
                 help="config.train.micro_batch values compared in one run "
                 "(repeats interleaved); ratios are to the first")
  defaults = ml1m.get_config().model
  p.add_argument("--attn_blocks", default=str(defaults.attn_blocks),
                 help="config.model.attn_blocks values compared likewise "
                 "(SASRec); each is paired with every --micro value")
  p.add_argument("--dropout_rng", default=defaults.dropout_rng,
                 help="config.model.dropout_rng values compared likewise")
  p.add_argument("--dtype", default=defaults.dtype,
                 help="config.model.dtype values compared likewise (matmul "
                 "operands: float32 | bfloat16)")
  p.add_argument("--ynn", default="project",
                 help="XLA:CPU YNNPACK fusions compared likewise: project "
                 "(off in the BCE train step only) | off | on (XLA's "
                 "default)")
  p.add_argument("--cpu_devices", type=int,
                 default=ml1m.get_config().cpu_devices,
                 help="config.cpu_devices: -1 auto (one device per core), "
                 "0 JAX's default (one device), n devices")
  args = p.parse_args()
  n_cpu = args.cpu_devices
  if n_cpu == -1:
    tc = ml1m.get_config().train
    n_cpu = sharding.auto_cpu_devices([tc.batch_size, tc.eval_batch_size])
  sharding.split_cpu(n_cpu)
  bucket_sets = [None] if args.length_buckets is None else [
      tuple(int(w) for w in s.split(",") if w)
      for s in args.length_buckets.split(";")]
  variants = [(int(m), int(b), r, d, k, y) for m in args.micro.split(",")
              for b in args.attn_blocks.split(",")
              for r in args.dropout_rng.split(",")
              for d in args.dtype.split(",")
              for k in bucket_sets
              for y in args.ynn.split(",")]
  mesh = sharding.make_mesh()
  cfg = ml1m.get_config()
  cfg.data.dir = os.environ.get("DIFF4REC_DATA_DIR", "../shared/data")
  prepare.ensure_for_config(cfg.data)
  ds = data_lib.load(cfg.data)
  print(f"machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, jax {jax.__version__}, devices "
        f"{jax.devices()}, cpu_devices {args.cpu_devices} -> "
        f"{mesh.devices.size} device(s), XLA_FLAGS "
        f"{os.environ.get('XLA_FLAGS', '')!r}")
  print(f"timed: {args.steps or 'the whole'} {'steps' if args.steps else 'epoch'}"
        f" per repeat; length_buckets {bucket_sets} (None: the config's)")
  peak = matmul_flops_per_s(mesh)
  print(f"float32 2048^3 matmul: {peak / 1e9:.1f} GFLOP/s")

  # Overrides of configs/ml1m.py. bce: the original SASRec setting (its
  # dropout, one attention-dropout mask shared across the batch as flax's
  # default); ce: ml1m.py as it trains.
  settings = {
      "bce": dict(loss="bce", model=dict(hidden=50, dropout=0.2,
                                         attn_dropout="shared")),
      "ce": dict(loss="ce", model=dict(hidden=64)),
  }
  for name, s in settings.items():
    if args.only and name not in args.only.split(","):
      continue
    c = ml1m.get_config()
    c.model.name = args.model
    c.train.loss = s["loss"]
    c.model.update(s["model"])
    c.model.num_heads = 1
    res = bench_train(c, ds, args.steps, args.repeats, mesh, variants)
    for mb, (rate, fps, rates, steals) in res.items():
      print(f"train {args.model} {name:3s} (hidden {c.model.hidden}, L 200, "
            f"batch 128, {_variant_name(mb)}): {rate:.0f} seq/s median of "
            f"{args.repeats} [{', '.join(f'{r:.0f}' for r in rates)}]; "
            f"{fps / 1e9:.1f} GFLOP/s = {fps / peak:.2f} of matmul peak; "
            f"x{rate / res[variants[0]][0]:.2f} vs "
            f"{_variant_name(variants[0])}"
            f"{steal_summary(rates, steals, ' seq/s')}")
  if not args.only or "eval" in args.only.split(","):
    c = ml1m.get_config()
    c.model.name = args.model
    res = bench_eval(c, ds, args.repeats, mesh, variants)
    for mb, (med, times, steals) in res.items():
      print(f"full-ranking eval of all {ds.num_users} users (hidden 64, L "
            f"200, {ds.num_items} items, history masked, {_variant_name(mb)}): "
            f"{med:.2f} s median [{', '.join(f'{t:.2f}' for t in times)}]; "
            f"x{res[variants[0]][0] / med:.2f} vs {_variant_name(variants[0])}"
            f"{steal_summary(times, steals, ' s', '{:.2f}')}")


if __name__ == "__main__":
  main()
