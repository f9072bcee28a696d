"""Shared test fixtures: where the staged datasets are, tiny configs."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)


def subprocess_env(devices=None) -> dict:
  """Environment of a CPU-only JAX subprocess.

  `devices`: number of fake CPU devices (None: one, and no XLA_FLAGS). The
  session's persistent compilation cache (see pytest_configure) is passed on
  through the JAX_* variables pytest_configure sets.
  """
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  if devices is not None:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return env


def run_driver_on_devices(tmp, driver_source, data_dir, counts=(1, 8)):
  """Runs `driver_source` once per device count, all at the same time.

  The driver is called as `driver.py REPO DATA_DIR WORKDIR OUT`; returns
  {count: OUT path} after every run has exited 0 (else fails with its log).
  """
  driver = tmp / "driver.py"
  driver.write_text(driver_source)
  procs = {}
  for n in counts:
    out = tmp / f"out{n}.json"
    procs[n] = (out, subprocess.Popen(
        [sys.executable, str(driver), REPO, data_dir, str(tmp / f"wd{n}"),
         str(out)], env=subprocess_env(n), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True))
  outs = {}
  for n, (out, proc) in procs.items():
    try:
      log, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
      proc.kill()
      raise
    assert proc.returncode == 0, f"{n} devices:\n{log[-4000:]}"
    outs[n] = out
  return outs


def shared_data_dir():
  """$DIFF4REC_DATA_DIR, else <repo>/../shared/data, if it holds ML-100K."""
  for d in (os.environ.get("DIFF4REC_DATA_DIR"),
            os.path.join(REPO, "..", "shared", "data")):
    if d and os.path.exists(os.path.join(d, "ml-100k.txt")):
      return os.path.abspath(d)
  return None


@pytest.fixture(scope="session")
def data_dir():
  d = shared_data_dir()
  if d is None:
    pytest.skip("ML-100K not found: set DIFF4REC_DATA_DIR to the staged data")
  return d


@pytest.fixture(scope="session")
def straight_run(tmp_path_factory, data_dir):
  """An uninterrupted tiny run: (config, workdir, results)."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import train  # pylint: disable=g-import-not-at-top
  c = tiny.get_config()
  c.data.dir = data_dir
  wd = str(tmp_path_factory.mktemp("straight"))
  return c, wd, train.train_and_evaluate(c, wd)


@pytest.fixture()
def tiny_config(data_dir):
  from configs import tiny  # pylint: disable=g-import-not-at-top
  c = tiny.get_config()
  c.data.dir = data_dir
  return c


def pytest_configure(config):
  """One persistent XLA compilation cache for the session's test runs.

  Each training run builds fresh jitted closures; with the cache, a rerun
  of the same computation (the resume tests) loads the compiled executable
  instead of compiling again.
  """
  del config
  import tempfile  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  cache = os.environ.get("DIFF4REC_TEST_JIT_CACHE") or tempfile.mkdtemp(
      prefix="diff4rec_jit_cache_")
  # Subprocesses (CLI tests) inherit the cache through the environment.
  os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
