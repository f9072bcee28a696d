"""Speed of the augmentation kernel and the similarity at Steam scale.

Synthetic data shaped like Steam (paper Table 1): 281,428 users, 13,044
items, max_len 50, sequence lengths 5 + Exp(7.9) clipped to 50 (mean ~12.4,
min 5), M = 100 candidates a user with random probabilities. Measures, on
whatever JAX backend is present:

* `pool.augment_all`: all users x K copies, fixed-size batches bucketed
  by length (one compiled call per batch), end to end (host gathers, kernel,
  copy into the [U, K, L] output); median of --runs, after a first call that
  compiles. Also the same without length buckets (every row at width L).
* `augment.augment_reference` (per-user numpy, Algorithm 1) on a random
  subsample of --ref_users users (in --runs chunks, each run right after a
  kernel run so both see the same load on a shared machine), extrapolated
  linearly to all users, and the ratio to the kernel.
* `pool.similarity_all` over all U x K copies (D = --dim), and
  `pool.score_all` (augment + score fused, copies not kept).

Run:  python benchmarks/augment_speed.py  [--runs=3 --ref_users=2000 ...]
"""

import argparse
import os
import platform
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from diff4rec_jax import augment  # pylint: disable=g-import-not-at-top
from diff4rec_jax import input_pipeline  # pylint: disable=g-import-not-at-top
from diff4rec_jax import pool  # pylint: disable=g-import-not-at-top


def steam_like(users, items, max_len, top_m, seed):
  """Synthetic left-padded sequences and candidates (numpy)."""
  rng = np.random.default_rng(seed)
  lengths = np.minimum(5 + np.floor(rng.exponential(7.9, users)),
                       max_len).astype(np.int32)
  seqs = rng.integers(1, items + 1, (users, max_len), dtype=np.int32)
  seqs[np.arange(max_len)[None] < max_len - lengths[:, None]] = 0
  # Distinct ids a row, like the generator's top-M: a random start plus
  # positive gaps whose total stays below the item count.
  gaps = rng.integers(1, max(2, items // top_m), (users, top_m))
  cand = ((rng.integers(0, items, (users, 1)) + np.cumsum(gaps, 1)) % items +
          1).astype(np.int32)
  prob = rng.random((users, top_m), dtype=np.float32) ** 4
  prob /= prob.sum(1, keepdims=True)
  return seqs, lengths, cand, prob


def timed(fn, runs):
  """(first-call seconds, [seconds of each of `runs` later calls], result)."""
  t = time.perf_counter()
  res = fn()
  first = time.perf_counter() - t
  times = []
  for _ in range(runs):
    t = time.perf_counter()
    res = fn()
    times.append(time.perf_counter() - t)
  return first, times, res


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--users", type=int, default=281428)
  ap.add_argument("--items", type=int, default=13044)
  ap.add_argument("--max_len", type=int, default=50)
  ap.add_argument("--top_m", type=int, default=100)
  ap.add_argument("--num_copies", type=int, default=10)
  ap.add_argument("--ratio", type=float, default=0.2)
  ap.add_argument("--batch_size", type=int, default=4096)
  ap.add_argument("--dim", type=int, default=64)
  ap.add_argument("--runs", type=int, default=3)
  ap.add_argument("--ref_users", type=int, default=2000)
  ap.add_argument("--full_width_runs", type=int, default=1,
                  help="runs without length buckets (0: skip)")
  ap.add_argument("--seed", type=int, default=0)
  a = ap.parse_args()

  print(f"machine: {platform.machine()} {platform.processor() or ''} "
        f"cpus={os.cpu_count()} backend={jax.default_backend()} "
        f"devices={jax.devices()} jax={jax.__version__}")
  print(f"load average at start: {os.getloadavg()}")
  seqs, lengths, cand, prob = steam_like(a.users, a.items, a.max_len,
                                         a.top_m, a.seed)
  u, l, k = a.users, a.max_len, a.num_copies
  print(f"data: users={u} items={a.items} max_len={l} M={a.top_m} K={k} "
        f"ratio={a.ratio} mean_len={lengths.mean():.2f} "
        f"min_len={lengths.min()} batch={a.batch_size} "
        f"repeated candidate ids: {augment.has_repeats(cand)}")
  for w, users in input_pipeline.length_buckets(lengths, l):
    print(f"  width {w:3d}: {len(users)} users, "
          f"{-(-len(users) // a.batch_size)} batches")
  key = jax.random.key(a.seed)
  kw = dict(num_copies=k, ratio=a.ratio, batch_size=a.batch_size)

  out = np.zeros((u, k, l), np.int32)
  t = time.perf_counter()
  out[:] = 1  # first touch of the output pages, reported on its own
  touch = time.perf_counter() - t
  run_kernel = lambda: pool.augment_all(key, seqs, lengths, cand, prob,
                                           out=out, **kw)
  t = time.perf_counter()
  copies = run_kernel()
  first = time.perf_counter() - t
  # Kernel runs alternate with reference runs on disjoint random subsamples
  # so that both see the same machine load (the CPU is shared).
  rng = np.random.default_rng(a.seed + 1)
  chunks = np.array_split(rng.choice(u, a.ref_users, replace=False), a.runs)
  times, ref_per_user = [], []
  for run in range(a.runs):
    t = time.perf_counter()
    copies = run_kernel()
    times.append(time.perf_counter() - t)
    sub = np.sort(chunks[run])
    t = time.perf_counter()
    augment.augment_reference(np.random.default_rng(run), seqs[sub],
                              lengths[sub], cand[sub], prob[sub],
                              num_copies=k, ratio=a.ratio)
    ref_per_user.append((time.perf_counter() - t) / len(sub))
  med = statistics.median(times)
  print(f"augment_all (length buckets): first call {first:.2f} s (includes "
        f"compiling each width); runs {[round(x, 2) for x in times]} s; "
        f"median {med:.2f} s = {1e6 * med / (u * k):.2f} us/copy "
        f"[first touch of the {out.nbytes / 2**20:.0f} MiB output: "
        f"{touch:.2f} s, not included]")
  ref_med = statistics.median(ref_per_user)
  ref_all = ref_med * u
  print(f"augment_reference (numpy, per user, {a.ref_users} random users in "
        f"{a.runs} chunks run between the kernel runs): "
        f"{[round(1e3 * x, 3) for x in ref_per_user]} ms/user, median "
        f"{1e3 * ref_med:.3f} ms/user -> extrapolated to {u} users: "
        f"{ref_all:.0f} s; kernel speed-up {ref_all / med:.0f}x "
        f"(run by run: "
        f"{[round(r * u / x) for r, x in zip(ref_per_user, times)]})")

  if a.full_width_runs:
    f_first, f_times, full = timed(
        lambda: pool.augment_all(key, seqs, lengths, cand, prob,
                                    widths=[l], **kw), a.full_width_runs)
    f_med = statistics.median(f_times)
    same = np.array_equal(full, copies)
    print(f"augment_all (every row at width {l}): first {f_first:.2f} s; "
          f"runs {[round(x, 2) for x in f_times]} s; median {f_med:.2f} s; "
          f"identical copies: {same}")
    del full

  t = time.perf_counter()
  augment.has_repeats(cand)
  print(f"has_repeats(cand) host check (inside each augment_all call): "
        f"{time.perf_counter() - t:.2f} s")

  emb = np.random.default_rng(2).normal(size=(a.items + 1, a.dim)).astype(
      np.float32)
  s_first, s_times, _ = timed(
      lambda: pool.similarity_all(emb, seqs, copies, lengths,
                                        batch_size=a.batch_size), a.runs)
  s_med = statistics.median(s_times)
  print(f"similarity_all (U x K, D={a.dim}): first {s_first:.2f} s; runs "
        f"{[round(x, 2) for x in s_times]} s; median {s_med:.2f} s")
  c_first, c_times, _ = timed(
      lambda: pool.score_all(key, emb, seqs, lengths, cand, prob, **kw),
      a.runs)
  c_med = statistics.median(c_times)
  print(f"score_all (augment + similarity fused, copies not kept): first "
        f"{c_first:.2f} s; runs {[round(x, 2) for x in c_times]} s; median "
        f"{c_med:.2f} s")
  print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
  main()
