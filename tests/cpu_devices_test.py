"""config.cpu_devices: the CPU backend split into several devices.

Each case that starts JAX runs in a subprocess, since the device count is
fixed when JAX initializes its backend.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, subprocess_env
from configs import tiny
from diff4rec_jax import config_lib
from diff4rec_jax import sharding


def test_auto_cpu_devices_divides_every_batch_size():
  assert sharding.auto_cpu_devices([128, 256], cores=2) == 2
  assert sharding.auto_cpu_devices([128, 256], cores=6) == 4
  assert sharding.auto_cpu_devices([128, 96], cores=8) == 8
  assert sharding.auto_cpu_devices([128, 96], cores=12) == 8   # gcd 32
  assert sharding.auto_cpu_devices([100], cores=8) == 5
  assert sharding.auto_cpu_devices([7], cores=2) == 1
  assert sharding.auto_cpu_devices([64], cores=1) == 1
  assert sharding.auto_cpu_devices([64], cores=0) == 1
  assert 1 <= sharding.auto_cpu_devices([64]) <= sharding.usable_cores()


def _run(code: str, env: dict) -> dict:
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


PROBE = """
import json, sys
sys.path.insert(0, {repo!r})
from diff4rec_jax import sharding
import jax
changed = sharding.split_cpu({n})
out = {{"changed": changed, "devices": jax.device_count()}}
try:
  sharding.split_cpu(2)
  out["second"] = "ok"
except RuntimeError as e:
  out["second"] = str(e)
mesh = sharding.make_mesh()
x = sharding.shard_batch({{"a": jax.numpy.arange(8.0)}}, mesh)["a"]
out["shards"] = len(x.sharding.device_set)
out["sum"] = float(jax.jit(lambda v: (v * 2).sum())(x))
print(json.dumps(out))
"""


@pytest.mark.parametrize("n", [1, 2, 4])
def test_split_cpu_makes_n_devices(n):
  out = _run(PROBE.format(repo=REPO, n=n), subprocess_env())
  assert out["changed"] == (n > 1)
  assert out["devices"] == n and out["shards"] == n
  assert out["sum"] == 56.0
  # Once JAX has started, a second call must refuse, not be ignored.
  assert "already initialized" in out["second"]


def test_split_cpu_leaves_an_explicit_xla_device_count():
  out = _run(PROBE.format(repo=REPO, n=2), subprocess_env(8))
  assert out == {"changed": False, "devices": 8, "second": out["second"],
                 "shards": 8, "sum": 56.0}
  assert out["second"] == "ok"    # no-op with XLA_FLAGS set, never raises


@pytest.mark.parametrize("bad", [-2, -7])
def test_bad_cpu_devices_names_the_field(bad):
  c = tiny.get_config()
  c.cpu_devices = bad
  with pytest.raises(ValueError, match="cpu_devices"):
    config_lib.validate(c)


def test_cpu_devices_is_resumable():
  assert "cpu_devices" in config_lib.RESUMABLE_FIELDS


def _main_on_two_devices(data_dir, workdir):
  env = dict(subprocess_env(), DIFF4REC_DATA_DIR=data_dir)
  cmd = [sys.executable, "-m", "diff4rec_jax.main", "--config=configs/tiny.py",
         f"--workdir={workdir}", "--config.cpu_devices=2",
         "--config.train.num_epochs=1", "--config.train.eval_every=1"]
  return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def test_main_runs_on_the_requested_cpu_devices_deterministically(
    data_dir, tmp_path):
  # Two runs of the same command: 2 devices each, the same metrics to the
  # last digit (what resuming relies on; the cross-device sums must not
  # depend on which device finishes first).
  procs = [_main_on_two_devices(data_dir, tmp_path / f"wd{i}")
           for i in range(2)]
  results = []
  for i, proc in enumerate(procs):
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "JAX devices: [CpuDevice(id=0), CpuDevice(id=1)]" in err
    assert "2 devices" in err
    with open(os.path.join(tmp_path / f"wd{i}", "results.json")) as f:
      results.append(json.load(f))
  for res in results:
    assert res["config"]["cpu_devices"] == 2
    assert len(res["devices"]) == 2
    assert 0.0 < res["test"]["NDCG@10"] < 1.0
  assert results[0]["valid"] == results[1]["valid"]
  assert results[0]["test"] == results[1]["test"]


def test_without_ynn_turns_ynnpack_fusions_off_on_cpu_only(monkeypatch):
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  flag = "xla_cpu_experimental_ynn_fusion_type"
  assert sharding.without_ynn("cpu") == {flag: ""}
  assert sharding.without_ynn("gpu") == {}
  assert sharding.without_ynn("tpu") == {}
  # A user who sets the flag keeps it.
  monkeypatch.setenv("XLA_FLAGS", f"--{flag}=dot")
  assert sharding.without_ynn("cpu") == {}


def test_bce_train_step_compiles_without_ynnpack_fusions(tiny_config,
                                                          monkeypatch):
  """The project's options reach XLA: the BCE step compiled with them holds
  no YNNPACK fusion; the CE step (XLA's defaults) does, so this test would
  notice a JAX whose CPU backend stops making them."""
  import jax
  import jax.numpy as jnp
  import optax
  from diff4rec_jax import data as data_lib
  from diff4rec_jax import models
  from diff4rec_jax import steps
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  if jax.default_backend() != "cpu":
    pytest.skip("XLA:CPU only")
  c = tiny_config
  ds = data_lib.load(c.data)
  model = models.get_model(c.model, ds.num_items, c.data.max_len)
  tx = optax.adam(1e-3)
  state = steps.init_state(model, tx, jax.random.key(0), c.data.max_len)
  batch = {"inputs": jnp.ones((16, 32), jnp.int32),
           "targets": jnp.ones((16, 32), jnp.int32)}
  texts = {}
  for loss in ("bce", "ce"):
    step = steps.make_train_step(model, tx, loss, ds.num_items)
    texts[loss] = step.lower(state, batch, jax.random.key(1)).compile(
        ).as_text()
  assert "__ynn_fusion" not in texts["bce"]
  assert "__ynn_fusion" in texts["ce"]


@pytest.mark.parametrize("name", ["base", "tiny", "ml1m", "beauty", "yelp",
                                  "steam"])
def test_no_config_splits_the_cpu_by_default(name):
  """A split CPU can abort under load (XLA's 40 s all-reduce rendezvous):
  every shipped config keeps JAX's single CPU device unless asked."""
  import importlib  # pylint: disable=g-import-not-at-top
  c = importlib.import_module(f"configs.{name}").get_config()
  assert c.cpu_devices == 0
