"""Crash safety through the CLI: SIGTERM, SIGKILL and a non-finite loss."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from diff4rec_jax import runlog
from diff4rec_jax import steps
from diff4rec_jax import train


def _start(workdir, data_dir, log_path, *overrides):
  env = dict(os.environ, DIFF4REC_DATA_DIR=data_dir, JAX_PLATFORMS="cpu",
             PYTHONUNBUFFERED="1")
  # cpu_devices=0: JAX's one CPU device, as in the in-process straight run
  # that the resumed run must match bit for bit (a split CPU sums metrics
  # per device, which moves the last float digits).
  cmd = [sys.executable, "-m", "diff4rec_jax.main", "--config=configs/tiny.py",
         f"--workdir={workdir}", "--config.cpu_devices=0", *overrides]
  log = open(log_path, "w")
  return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log,
                          stderr=subprocess.STDOUT)


def _wait_for(proc, log_path, text, timeout=240):
  t = time.time()
  while time.time() - t < timeout:
    with open(log_path) as f:
      if text in f.read():
        return
    if proc.poll() is not None:
      raise AssertionError(f"process ended before {text!r}:\n"
                           + open(log_path).read()[-3000:])
    time.sleep(0.2)
  proc.kill()
  raise AssertionError(f"timed out waiting for {text!r}")


def test_sigterm_then_sigkill_then_resume_matches_straight_run(
    straight_run, data_dir, tmp_path):
  _, _, want = straight_run
  wd = str(tmp_path / "wd")
  log = str(tmp_path / "log1")
  # 1) SIGTERM during epoch 2: checkpoint saved, exit 143 (128 + SIGTERM:
  # preempted, resumable; README "Exit codes").
  p = _start(wd, data_dir, log)
  _wait_for(p, log, "epoch 1/4")
  p.send_signal(signal.SIGTERM)
  assert p.wait(timeout=240) == 128 + signal.SIGTERM
  out = open(log).read()
  assert "SIGTERM received" in out and "Rerun the same command" in out
  # 2) Resume, then SIGKILL (no chance to save) during a later epoch.
  log = str(tmp_path / "log2")
  p = _start(wd, data_dir, log)
  _wait_for(p, log, "resumed from")
  _wait_for(p, log, "epoch 3/4")
  p.send_signal(signal.SIGKILL)
  p.wait(timeout=60)
  # 3) Resume to the end: same metrics as the run never interrupted.
  log = str(tmp_path / "log3")
  p = _start(wd, data_dir, log)
  assert p.wait(timeout=300) == 0, open(log).read()[-3000:]
  with open(os.path.join(wd, "results.json")) as f:
    got = json.load(f)
  assert got["best_epoch"] == want["best_epoch"]
  assert got["valid"] == want["valid"] and got["test"] == want["test"]
  assert not [f for f in os.listdir(wd) if f.endswith(".tmp")]


def test_non_finite_loss_stops_naming_the_step(tiny_config, tmp_path,
                                               monkeypatch):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  real = steps.make_train_step

  def poisoned(*args, **kwargs):
    """The real step, whose reported loss turns NaN from step 21 on."""
    step = real(*args, **kwargs)

    def wrapped(state, batch, rng):
      state, m = step(state, batch, rng)
      return state, dict(m, loss=jnp.where(state["step"] >= 21, jnp.nan,
                                           m["loss"]))
    return wrapped

  monkeypatch.setattr(steps, "make_train_step", poisoned)
  c = tiny_config
  c.train.checkpoint_every = 1
  with pytest.raises(FloatingPointError) as e:
    train.train_and_evaluate(c, str(tmp_path))
  # 15 steps an epoch: epoch 1 saved at step 15; step 21 is in epoch 2.
  assert "at step 21" in str(e.value)
  assert "last good checkpoint (step 15)" in str(e.value)


def test_stop_is_agreed_across_processes(monkeypatch):
  """With several processes, a stop on any host stops every host, at the
  same sync steps only."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  stop = runlog.StopSignal()  # pylint: disable=protected-access
  try:
    assert not stop.agreed(20)                 # one process: own flag
    monkeypatch.setattr(train.jax, "process_count", lambda: 2)
    other = {"flag": 0}
    monkeypatch.setattr(
        multihost_utils, "process_allgather",
        lambda x: np.array([int(x), other["flag"]], np.int32))
    assert not stop.agreed(20) and not stop.agreed(None)
    other["flag"] = 1                          # the other host got SIGTERM
    assert not stop.agreed(stop.SYNC_EVERY + 1)  # not a sync step
    assert stop.agreed(2 * stop.SYNC_EVERY) and stop.requested
    assert stop.agreed(None)
  finally:
    stop.restore()
