"""Pins a tiny run's metrics in each mode, so a refactor that claims to
change no number can prove it (issue 23).

configs/tiny.py on ML-100K with a 3-epoch generator and a 2-epoch warm-up,
in modes base, aug and diff4rec: the valid and test metrics and the best
epoch must equal those in tests/golden/tiny_pin.json *exactly*.

Floating-point results depend on the XLA build and on the CPU it compiles
for, so the golden file records the environment it was written on (jax,
jaxlib, numpy versions; machine; CPU model) and the test compares only
there; elsewhere it skips and says so. After a change that is meant to move
the numbers (a new default, a fixed bug), or on a new environment, rewrite
it and commit the diff with the reason:

  DIFF4REC_DATA_DIR=../shared/data python tests/pin_test.py --write
"""

import json
import os
import platform
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conftest  # noqa: E402  (also puts the repo on sys.path)

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden",
                      "tiny_pin.json")
MODES = ("base", "aug", "diff4rec")


def environment() -> dict:
  """What the pinned floats depend on besides the code."""
  import jax
  import jaxlib
  import numpy as np
  cpu = platform.processor()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((l.split(":", 1)[1].strip() for l in f
                  if l.startswith("model name")), cpu)
  except OSError:
    pass
  return {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "numpy": np.__version__, "machine": platform.machine(), "cpu": cpu,
          "backend": jax.default_backend()}


def pinned_runs(data_dir: str, root: str) -> dict:
  """{mode: {'valid', 'test', 'best_epoch'}} of the pinned tiny runs."""
  from configs import tiny
  from diff4rec_jax import train
  out = {}
  for mode in MODES:
    c = tiny.get_config()
    c.data.dir = data_dir
    c.mode = mode
    c.generator.epochs = 3
    c.augment.warmup_epochs = 2
    r = train.train_and_evaluate(c, os.path.join(root, mode))
    out[mode] = {"valid": r["valid"], "test": r["test"],
                 "best_epoch": r["best_epoch"]}
  return json.loads(json.dumps(out))   # the floats as the file holds them


def test_tiny_metrics_are_pinned(tmp_path):
  data_dir = conftest.shared_data_dir()
  if data_dir is None:
    pytest.skip("ML-100K is not staged (set DIFF4REC_DATA_DIR)")
  with open(GOLDEN) as f:
    golden = json.load(f)
  env = environment()
  if golden["environment"] != env:
    pytest.skip(f"golden metrics were written on {golden['environment']}, "
                f"this is {env}; rewrite with `python tests/pin_test.py "
                "--write` to pin here")
  got = pinned_runs(data_dir, str(tmp_path))
  for mode in MODES:
    assert got[mode] == golden["runs"][mode], (
        f"mode {mode}: metrics moved.\n got    {got[mode]}\n pinned "
        f"{golden['runs'][mode]}\nIf the change is meant to move them, "
        "rewrite tests/golden/tiny_pin.json (see this file's docstring).")


def test_environment_mismatch_is_detected():
  env = environment()
  assert env == environment()
  assert {**env, "jaxlib": "0.0.0"} != env


if __name__ == "__main__":
  import tempfile
  if sys.argv[1:] != ["--write"]:
    sys.exit("usage: python tests/pin_test.py --write")
  from absl import logging
  logging.set_verbosity("error")
  data = conftest.shared_data_dir()
  if data is None:
    sys.exit("ML-100K is not staged: set DIFF4REC_DATA_DIR")
  with tempfile.TemporaryDirectory() as tmp:
    runs = pinned_runs(data, tmp)
  os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
  with open(GOLDEN, "w") as f:
    json.dump({"environment": environment(), "runs": runs}, f, indent=1,
              sort_keys=True)
    f.write("\n")
  print(f"wrote {GOLDEN}:",
        {m: runs[m]["valid"]["NDCG@10"] for m in MODES})
