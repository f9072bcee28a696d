"""Data parallelism on 8 fake CPU devices gives the run of 1 device.

Each run is a subprocess, since the device count is fixed when JAX starts
(`XLA_FLAGS=--xla_force_host_platform_device_count=8`). Both train the tiny
config (shrunk further: 2 epochs, evaluation every epoch) through
`train.train_and_evaluate`; a wrapper around `steps.make_train_step` records
every step's loss and how many devices each batch was spread over.
"""

import json
import textwrap

import numpy as np
import pytest

from conftest import run_driver_on_devices

DRIVER = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import jax
    from configs import tiny
    from diff4rec_jax import steps
    from diff4rec_jax import train

    data_dir, workdir, out = sys.argv[2:5]
    record = {"losses": [], "batch_devices": set()}
    make_train_step = steps.make_train_step

    def recording_make_train_step(*args, **kwargs):
      step = make_train_step(*args, **kwargs)
      def recorded(state, batch, rng):
        record["batch_devices"].add(len(batch["inputs"].sharding.device_set))
        state, metrics = step(state, batch, rng)
        record["losses"].append(metrics["loss"])  # fetched at the end
        return state, metrics
      return recorded

    steps.make_train_step = recording_make_train_step

    def config(batch_size):
      c = tiny.get_config()
      c.data.dir = data_dir
      c.data.max_len = 20
      c.model.hidden = 16
      c.train.num_epochs = 2
      c.train.eval_every = 1
      c.train.batch_size = batch_size
      c.train.eval_batch_size = 256
      return c

    result = {"devices": jax.device_count()}
    if jax.device_count() > 1:
      try:
        train.train_and_evaluate(config(60), workdir + "_bad_batch")
      except ValueError as e:
        result["bad_batch_error"] = str(e)
    res = train.train_and_evaluate(config(64), workdir)
    result.update(
        valid=res["valid"], test=res["test"], best_epoch=res["best_epoch"],
        users=res["dataset"]["users"],
        losses=[float(x) for x in jax.device_get(record["losses"])],
        batch_devices=sorted(record["batch_devices"]),
        log=[json.loads(l) for l in open(workdir + "/metrics.jsonl")])
    with open(out, "w") as f:
      json.dump(result, f)
""")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
  """{devices: what the driver wrote} for 1 and 8 devices (run at once)."""
  outs = run_driver_on_devices(tmp_path_factory.mktemp("sharding"), DRIVER,
                               data_dir)
  return {n: json.loads(out.read_text()) for n, out in outs.items()}


def test_runs_use_the_devices_they_were_given(runs):
  assert runs[1]["devices"] == 1 and runs[1]["batch_devices"] == [1]
  assert runs[8]["devices"] == 8 and runs[8]["batch_devices"] == [8]


def test_loss_curves_match(runs):
  one, eight = runs[1], runs[8]
  assert len(one["losses"]) == len(eight["losses"]) > 20
  np.testing.assert_allclose(eight["losses"], one["losses"], rtol=1e-4)
  epoch_loss = lambda r: [l["train_loss"] for l in r["log"]
                          if "train_loss" in l]
  assert len(epoch_loss(one)) == 2
  np.testing.assert_allclose(epoch_loss(eight), epoch_loss(one), rtol=1e-4)


def test_metrics_match_up_to_one_user(runs):
  one, eight = runs[1], runs[8]
  tol = 1.01 / one["users"]     # one user's rank flipping moves a metric <= 1/U
  assert eight["best_epoch"] == one["best_epoch"]
  for split in ("valid", "test"):
    for k, v in one[split].items():
      assert abs(eight[split][k] - v) <= tol, (split, k, v, eight[split][k])
  evals = lambda r: [l for l in r["log"] if "valid/NDCG@10" in l]
  assert [l["epoch"] for l in evals(eight)] == [1, 2]
  for a, b in zip(evals(one), evals(eight)):
    for k in a:
      if k.startswith("valid/"):
        assert abs(a[k] - b[k]) <= tol, (a["epoch"], k)


def test_batch_not_divisible_by_devices_names_both_numbers(runs):
  msg = runs[8]["bad_batch_error"]
  assert "config.train.batch_size=60" in msg
  assert "number of devices (8)" in msg
