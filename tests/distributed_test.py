"""Two processes joined by jax.distributed give the one-process run.

Two CPU processes on localhost (one device each, coordinator 127.0.0.1 on a
free port, cross-process collectives over gloo, JAX's CPU default) train the
tiny config (2 epochs) with `train.train_and_evaluate` in one shared
workdir, next to a one-process run of the same config on the same 2-device
mesh (two fake CPU devices in one process), in two modes: 'base' (the
recommender alone) and 'diff4rec' (every phase: generator
training and top-M inference, warm-up recommender, K copies, similarities,
curriculum training). Both processes must end with the same results as the
one-process run, and the run files must be written once (by process 0); the
final evaluation restores the best checkpoint, so the Orbax save and
restore of a two-process run are exercised as well.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conftest import REPO
from conftest import subprocess_env

DRIVER = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import jax

    data_dir, workdir, out = sys.argv[2:5]
    num_processes, process_id = int(sys.argv[5]), int(sys.argv[6])
    mode = sys.argv[8]
    if num_processes > 1:
      # Before anything touches a device, as main.py --distributed does.
      jax.distributed.initialize(sys.argv[7], num_processes=num_processes,
                                 process_id=process_id,
                                 initialization_timeout=120)

    from configs import tiny
    from diff4rec_jax import train

    c = tiny.get_config()
    c.data.dir = data_dir
    c.data.max_len = 20
    c.model.hidden = 16
    c.train.num_epochs = 2
    c.train.eval_every = 1
    c.train.eval_batch_size = 256
    c.mode = mode
    if mode == "diff4rec":
      g = c.generator
      g.epochs, g.latent_size, g.encoder_hidden = 2, 16, (32,)
      g.denoiser_hidden, g.top_m, g.batch_size = (32,), 20, 128
      c.augment.warmup_epochs, c.augment.num_copies = 1, 4
      c.augment.top_m = g.top_m
    res = train.train_and_evaluate(c, workdir)
    with open(out, "w") as f:
      json.dump({"process_index": jax.process_index(),
                 "process_count": jax.process_count(),
                 "devices": jax.device_count(),
                 "local_devices": jax.local_device_count(),
                 "valid": res["valid"], "test": res["test"],
                 "best_epoch": res["best_epoch"],
                 "users": res["dataset"]["users"]}, f)
""")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module", params=["base", "diff4rec"])
def runs(request, tmp_path_factory, data_dir):
  """(one-process result, [process 0 result, process 1 result], workdir,
  one-process workdir, mode)."""
  mode = request.param
  tmp = tmp_path_factory.mktemp(f"distributed_{mode}")
  driver = tmp / "driver.py"
  driver.write_text(DRIVER)
  coordinator = f"127.0.0.1:{free_port()}"

  def start(workdir, out, n, i, devices=None):
    return subprocess.Popen(
        [sys.executable, str(driver), REPO, data_dir, str(workdir), str(out),
         str(n), str(i), coordinator, mode], env=subprocess_env(devices),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

  # The one-process reference runs on 2 CPU devices, the same 2-way mesh
  # and reduction order as the two processes: 1 vs 2 devices is the
  # sharding tests' subject, and its float-order differences compound over
  # the diff4rec phases (different CPUs flip different numbers of users).
  jobs = [(tmp / "single.json", start(tmp / "wd_single", tmp / "single.json",
                                      1, 0, devices=2))]
  jobs += [(tmp / f"p{i}.json", start(tmp / "wd_two", tmp / f"p{i}.json", 2,
                                      i)) for i in (0, 1)]
  logs = []
  deadline = time.monotonic() + 400     # for all three together
  try:
    for _, proc in jobs:
      logs.append(proc.communicate(
          timeout=max(1.0, deadline - time.monotonic()))[0])
  finally:
    for _, proc in jobs:
      if proc.poll() is None:
        proc.kill()
  for (out, proc), log, name in zip(jobs, logs,
                                    ("one process", "process 0", "process 1")):
    assert proc.returncode == 0, f"{name}:\n{log[-4000:]}"
  single, p0, p1 = (json.loads(out.read_text()) for out, _ in jobs)
  return single, [p0, p1], tmp / "wd_two", tmp / "wd_single", mode


def test_two_processes_form_one_mesh(runs):
  procs = runs[1]
  for i, r in enumerate(procs):
    assert r["process_index"] == i and r["process_count"] == 2
    assert r["devices"] == 2 and r["local_devices"] == 1


def test_results_match_the_one_process_run(runs):
  single, (p0, p1) = runs[:2]
  assert p0 == p1 | {"process_index": 0}  # both processes agree exactly
  assert single["devices"] == 2
  assert p0["best_epoch"] == single["best_epoch"]
  tol = 1.01 / single["users"]    # at most one user's rank may flip
  for split in ("valid", "test"):
    for k, v in single[split].items():
      assert abs(p0[split][k] - v) <= tol, (split, k, v, p0[split][k])


def test_run_files_written_once(runs):
  _, (p0, _), workdir, _, _ = runs
  with open(workdir / "results.json") as f:
    saved = json.load(f)
  assert saved["valid"] == p0["valid"] and saved["test"] == p0["test"]
  assert len(saved["devices"]) == 2
  lines = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
  # Two epochs and the final record, not one set per process.
  assert [(l["epoch"], l.get("final", False)) for l in lines] == [
      (1, False), (2, False), (2, True)]
  ckpt = workdir / "ckpt" / "recommender"
  assert sorted(os.listdir(ckpt / "best")) == ["15", "30"]  # KEEP_BEST
  # The last two saves (checkpointing.KEEP_LATEST), each with a manifest.
  assert sorted(os.listdir(ckpt / "latest")) == ["15", "30"]
  for step in ("15", "30"):
    assert (ckpt / "latest" / step / "diff4rec_manifest.json").exists()
  assert not (workdir / "run.lock").exists()


def test_generator_and_augmentation_phases(runs):
  """diff4rec mode: the generator's metrics are written once and match the
  one-process run; the copies are the one-process run's (every copy is a
  function of its user's top-M row and key, whichever process made it)."""
  _, _, workdir, single_dir, mode = runs
  if mode != "diff4rec":
    pytest.skip("base mode has no generator or augmentation phase")
  recs = {}
  for name, d in (("two", workdir), ("one", single_dir)):
    with open(d / "generator" / "generator_metrics.jsonl") as f:
      recs[name] = [json.loads(l) for l in f]
  assert [(r["kind"], r["epoch"]) for r in recs["two"]] == [
      ("train", 1), ("train", 2), ("eval", 2)]
  for a, b in zip(recs["two"], recs["one"]):
    for k in ("loss", "nll", "kl", "noise"):
      if k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, err_msg=k)
  for part in ("generator", "vae"):
    for k, v in recs["one"][-1][part].items():
      assert abs(recs["two"][-1][part][k] - v) <= 1.01 / 943, (part, k)
  with np.load(workdir / "augmented.npz") as two, \
       np.load(single_dir / "augmented.npz") as one:
    assert two["copies"].shape == (943, 4, 20)
    same = (two["copies"] == one["copies"]).all(axis=(1, 2))
    # A user's copies differ only if its top-M differs (float ties).
    assert same.mean() > 0.99, same.mean()
    np.testing.assert_allclose(two["sim"][same], one["sim"][same],
                               atol=1e-5)
