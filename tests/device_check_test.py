"""benchmarks/device_check.sh: what it refuses before it spends device time.

The check itself needs the device (a GPU lent to a session); here only its
guards run, on a copy of the script in an empty tree, so that nothing of
the checkout's own .device/ is read or written.
"""

import os
import shutil
import subprocess

from conftest import REPO


def _run(tmp_path, args, env):
  os.makedirs(tmp_path / "benchmarks", exist_ok=True)
  script = tmp_path / "benchmarks" / "device_check.sh"
  shutil.copy(os.path.join(REPO, "benchmarks", "device_check.sh"), script)
  full = {k: v for k, v in os.environ.items()
          if k not in ("OUT", "DIFF4REC_DATA_DIR")}
  full.update(env)
  return subprocess.run(["bash", str(script), *args], env=full,
                        cwd=tmp_path, capture_output=True, text=True,
                        timeout=60)


def test_needs_out(tmp_path):
  r = _run(tmp_path, [], {})
  assert r.returncode != 0
  assert "OUT" in r.stderr


def test_needs_prepared_folder(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  r = _run(tmp_path, [], {"OUT": str(out)})
  assert r.returncode == 2
  assert "run with --prepare here first" in r.stdout
  assert not os.listdir(out)


def test_refuses_a_half_prepared_folder(tmp_path):
  # What a --prepare cut short after its mkdir leaves: the folders, one
  # wheel, no data.
  out = tmp_path / "out"
  out.mkdir()
  (tmp_path / ".device" / "whl").mkdir(parents=True)
  (tmp_path / ".device" / "data").mkdir()
  (tmp_path / ".device" / "whl" / "a-1.0-py3-none-any.whl").write_text("")
  r = _run(tmp_path, [], {"OUT": str(out)})
  assert r.returncode == 2
  assert "missing or incomplete" in r.stdout
  assert not os.listdir(out)


def test_prepare_needs_data_dir(tmp_path):
  r = _run(tmp_path, ["--prepare"], {})
  assert r.returncode != 0
  assert "DIFF4REC_DATA_DIR" in r.stderr
  assert not (tmp_path / ".device").exists()
