"""The README's main command on a busy machine: does it finish?

    python benchmarks/busy_machine.py                      # ML-1M, 2 epochs
    python benchmarks/busy_machine.py --config=configs/tiny.py --epochs=2

Runs `python -m diff4rec_jax.main --config=<config> --workdir=<workdir>
--config.train.num_epochs=<epochs> [overrides]` (the README's main command,
shortened) while a second, CPU-heavy process runs beside it: a numpy matmul
loop (multi-threaded BLAS, `--hog_threads` threads; 0 = numpy's default, all
cores). This is the load under which the old default `cpu_devices=-1`
aborted (XLA's CPU all-reduce rendezvous timing out after 40 s, exit 134:
issue 21). Checks that the run exits 0 and writes results.json; prints one
JSON line: return code, wall seconds, the hog's matmuls and the load
average. Exit status 0 if the run finished, 1 if not.

Extra `--config.*` overrides after `--` go to the run, e.g.
`-- --config.cpu_devices=-1` to try the opt-in split CPU.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOG = """
import sys, time
import numpy as np
a = np.random.default_rng(0).random((768, 768))
n, t = 0, time.time()
while True:
  a = a @ a
  a /= np.abs(a).max()
  n += 1
  if time.time() - t > 5:
    print(n, flush=True)
    t = time.time()
"""


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--config", default="configs/ml1m.py")
  ap.add_argument("--epochs", type=int, default=2)
  ap.add_argument("--workdir", default="",
                  help="default: a fresh temp folder, deleted afterwards")
  ap.add_argument("--hog_threads", type=int, default=0,
                  help="BLAS threads of the CPU hog (0 = all cores)")
  ap.add_argument("--timeout_min", type=float, default=120.0)
  ap.add_argument("overrides", nargs="*", help="after --: --config.* flags")
  args = ap.parse_args(argv)

  workdir = args.workdir or tempfile.mkdtemp(prefix="busy_machine_")
  env = dict(os.environ)
  hog_env = dict(env)
  if args.hog_threads:
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
      hog_env[k] = str(args.hog_threads)
  hog = subprocess.Popen([sys.executable, "-c", HOG], env=hog_env,
                         stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
  cmd = [sys.executable, "-m", "diff4rec_jax.main", f"--config={args.config}",
         f"--workdir={workdir}", f"--config.train.num_epochs={args.epochs}",
         *args.overrides]
  print("running:", " ".join(cmd), flush=True)
  print(f"beside: a numpy matmul loop (pid {hog.pid}, "
        f"{args.hog_threads or 'all'} threads)", flush=True)
  t0 = time.time()
  try:
    run = subprocess.run(cmd, cwd=REPO, env=env,
                         timeout=args.timeout_min * 60)
    rc = run.returncode
  except subprocess.TimeoutExpired:
    rc = "timeout"
  wall = time.time() - t0
  load = os.getloadavg()
  os.killpg(hog.pid, signal.SIGKILL)
  out, _ = hog.communicate()
  ticks = [int(x) for x in out.split()] if out else []
  results = os.path.join(workdir, "results.json")
  finished = rc == 0 and os.path.exists(results)
  summary = {"config": args.config, "epochs": args.epochs,
             "overrides": args.overrides, "rc": rc, "finished": finished,
             "wall_seconds": round(wall, 1),
             "hog_matmuls": ticks[-1] if ticks else 0,
             "hog_reports": len(ticks),
             "load_average_1_5_15": [round(x, 2) for x in load]}
  if finished:
    with open(results) as f:
      res = json.load(f)
    summary["test_NDCG@10"] = res["test"]["NDCG@10"]
    summary["train_seconds"] = res.get("train_seconds")
  print(json.dumps(summary), flush=True)
  if not args.workdir:
    shutil.rmtree(workdir, ignore_errors=True)
  return 0 if finished else 1


if __name__ == "__main__":
  sys.exit(main())
