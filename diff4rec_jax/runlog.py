"""Run files and stop requests of a training phase (the drivers' side).

metrics.jsonl + TensorBoard (`RunLog`, process 0 only), atomic JSON files,
the SIGTERM/SIGINT flag a loop polls (`StopSignal`) and the `Interrupted`
it raises, and the log's number formats.
"""

from __future__ import annotations

import json
import os
import signal
import threading

from typing import Any, Optional

from absl import logging
import jax
import numpy as np

from diff4rec_jax import rundir
from diff4rec_jax import sharding


is_chief = sharding.is_chief


# metrics.jsonl fields that measure time, not results (they differ between a
# resumed run and a straight one).
TIMING_FIELDS = ("seq_per_s", "train_epoch_seconds", "eval_seconds")


class RunLog:
  """metrics.jsonl (or `name`) + TensorBoard (workdir/tb), written by
  process 0 only."""

  def __init__(self, workdir: str, resume_epoch: int,
               name: str = "metrics.jsonl"):
    self.path = os.path.join(workdir, name)
    self._tb = None
    if not is_chief():
      return
    # Drop records newer than the checkpoint we resume from, and the final
    # record of a run killed before results.json: they are redone. (The
    # generator's end-of-training "eval" rows are final ones; files written
    # before loop.py lack the flag.)
    if os.path.exists(self.path):
      keep = [json.dumps(r) + "\n" for r in rundir.read_jsonl(self.path)
              if r.get("epoch", 0) <= resume_epoch and not r.get("final")
              and r.get("kind") != "eval"]
      atomic_write(self.path, "".join(keep))
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, "tb"))
    except ImportError:  # TensorBoard files are optional.
      logging.warning("tensorboardX not installed: no TensorBoard files.")

  def write(self, record: dict, step: int) -> None:
    if not is_chief():
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for k, v in record.items():
        if isinstance(v, (int, float)) and k not in ("epoch", "step"):
          self._tb.add_scalar(k.replace("@", "_"), v, step)
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def code_version() -> dict:
  """What code and libraries this process runs: the git commit of the
  package's checkout (None outside one) and whether its tracked code
  (diff4rec_jax/, configs/, benchmarks/) differs from it, the jax / jaxlib / flax versions and XLA_FLAGS. results.json
  records it, so that two runs of one config that disagree can be told
  apart by their code (a resumed run records the code that finished it)."""
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  # No index lock taken: a session's own git commands may run meanwhile.
  env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")

  def git(*args):
    try:
      out = subprocess.run(["git", "-C", root, *args], capture_output=True,
                           text=True, timeout=10, check=True, env=env)
    except (OSError, subprocess.SubprocessError):
      return None
    return out.stdout.strip()

  commit = git("rev-parse", "HEAD")
  # The code only: results files under results/ change while runs go on.
  dirty = git("status", "--porcelain", "--untracked-files=no", "--",
              "diff4rec_jax", "configs", "benchmarks")
  out = {"commit": commit, "dirty": None if commit is None else bool(dirty),
         "xla_flags": os.environ.get("XLA_FLAGS", "")}
  for lib in ("jax", "jaxlib", "flax"):
    try:
      out[lib] = importlib.metadata.version(lib)
    except importlib.metadata.PackageNotFoundError:
      out[lib] = None
  return out


# Instruction sets that change XLA's CPU code (vector width, bfloat16 dot
# products), and so the rounding of a run's sums.
_ISA = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")


def machine_info(cpuinfo: str = "/proc/cpuinfo") -> dict:
  """The host's CPU as results.json records it: model name, the machine's
  cores and those this process may use (a pinned queue: 1), and which of
  _ISA it has (None each where /proc/cpuinfo cannot be read; ARM lists
  'Features', with none of _ISA). Two runs of
  one config and code on CPUs with other instruction sets may round
  differently and drift apart over the epochs (session 21: same model
  name, 'AMD EPYC', other results)."""
  model, flags = None, None
  try:
    with open(cpuinfo) as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model is None:
          model = value.strip()
        elif key.strip() in ("flags", "Features") and flags is None:
          flags = set(value.split())
  except OSError:
    pass
  try:
    usable = len(os.sched_getaffinity(0))
  except (AttributeError, OSError):     # not Linux
    usable = os.cpu_count()
  return {"cpu": model, "cores": os.cpu_count(), "cores_usable": usable,
          "isa": None if flags is None else [f for f in _ISA if f in flags]}


def atomic_write(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
  if is_chief():
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


# Seconds between step-level progress lines within an epoch (besides
# train.log_every_steps): an epoch longer than this shows its progress.
PROGRESS_SECONDS = 30.0


class Interrupted(Exception):
  """Raised when a run stops early on purpose (tests, preemption).

  `signum`: the signal that asked for the stop (main.py exits with 128 +
  signum, 143 for SIGTERM), or None (a test's `stop_after_epochs`).
  """

  def __init__(self, msg: str, signum: Optional[int] = None):
    super().__init__(msg)
    self.signum = signum


class StopSignal:
  """SIGTERM/SIGINT set a flag; the loop saves a checkpoint and exits.

  TPU VMs and most schedulers announce preemption with SIGTERM. A second
  signal falls through to the previous handler. With several processes the
  hosts must stop at the same step (saving is collective), so `agreed`
  all-gathers the flags every `SYNC_EVERY` steps and at epoch ends, at the
  same points on every process.
  """
  SYNC_EVERY = 20

  def __init__(self):
    self.requested = False
    self.name = ""
    self.signum = None
    self._old = {}
    if threading.current_thread() is not threading.main_thread():
      return
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._old[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    if self.requested:      # second signal: default behaviour
      self.restore()
      signal.raise_signal(signum)
      return
    self.requested = True
    self.signum = signum
    self.name = signal.Signals(signum).name
    logging.warning("%s received: saving a checkpoint and stopping",
                    self.name)

  def agreed(self, batches_done: Optional[int]) -> bool:
    """Whether to stop now: this process's flag, or any process's.

    Args:
      batches_done: batches done in this epoch, or None at an epoch end.
    """
    if jax.process_count() == 1:
      return self.requested
    if batches_done is not None and batches_done % self.SYNC_EVERY:
      return False
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    flags = multihost_utils.process_allgather(np.int32(self.requested))
    if np.any(flags) and not self.requested:
      self.requested, self.name = True, "stop on another host"
      self.signum = signal.SIGTERM
    return bool(np.any(flags))

  def restore(self):
    for sig, old in self._old.items():
      signal.signal(sig, old)
    self._old = {}


def fmt_secs(s: float) -> str:
  s = int(s)
  return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"


def fmt_metrics(m: dict) -> str:
  return " ".join(f"{k} {v:.4f}" for k, v in m.items())
