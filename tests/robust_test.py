"""Issue 21: damaged files, wrong data, two processes, user errors.

Small by design: checkpoint damage on hand-made arrays, data cases on tiny
hand-made files, one in-process tiny run (disk full mid-save) and a few
short CLI subprocesses (lock, exit codes).
"""

import glob
import json
import logging
import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, subprocess_env
from diff4rec_jax import checkpointing
from diff4rec_jax import config_lib
from diff4rec_jax import data
from diff4rec_jax import errors
from diff4rec_jax import interactions
from diff4rec_jax import loop
from diff4rec_jax import rundir
from diff4rec_jax import runlog
from diff4rec_jax import train


# ----------------------------------------------------------------------------
# 3. Damaged checkpoints
# ----------------------------------------------------------------------------
def _state(k):
  w = np.random.default_rng(0).normal(size=(64, 100)).astype(np.float32)
  w[0, 0] = k
  return {"w": w}


def _biggest_file(folder):
  """The largest array data file of a save (under an OCDBT `d/` folder)."""
  files = glob.glob(os.path.join(folder, "**", "d", "*"), recursive=True)
  return max(files, key=os.path.getsize)


def _two_saves(folder) -> str:
  """A checkpoint folder with latest and best saves at steps 1 and 2."""
  d = str(folder)
  ck = checkpointing.Checkpointer(d)
  for k in (1, 2):
    ck.save_best(k, _state(k), {"epoch": k})
    ck.save(k, _state(k), {"epoch": k})
  ck.close()
  return d


def test_damaged_checkpoint_falls_back_to_the_previous_good_one(tmp_path,
                                                                 caplog):
  d = _two_saves(tmp_path / "c")
  caplog.set_level(logging.WARNING)
  # A truncated data file in the newest best save (final evaluation).
  fb = _biggest_file(os.path.join(d, "best", "2"))
  open(fb, "r+b").truncate(os.path.getsize(fb) // 2)
  ck = checkpointing.Checkpointer(d)
  best, best_meta = ck.restore_best(_state(0))
  assert best_meta["epoch"] == 1 and float(best["w"][0, 0]) == 1.0
  assert f"{fb}: " in caplog.text and "truncated" in caplog.text
  assert "the final evaluation uses the previous best save" in caplog.text
  ck.close()
  # A flipped byte: Orbax alone loads it silently; the manifest catches it.
  f = _biggest_file(os.path.join(d, "latest", "2"))
  raw = bytearray(open(f, "rb").read())
  raw[len(raw) // 2] ^= 0x10
  open(f, "wb").write(raw)
  ck = checkpointing.Checkpointer(d)
  state, meta = ck.restore(_state(0))
  assert meta["epoch"] == 1 and float(state["w"][0, 0]) == 1.0
  assert f"{f}: content differs" in caplog.text
  # The damaged steps are gone: the run can save them again.
  ck.save(2, _state(2), {"epoch": 2})
  assert ck.latest_step() == 2
  ck.close()


def _tree(folder):
  """{path: (size, mtime_ns)} of everything under `folder`."""
  out = {}
  for root, dirs, files in os.walk(folder):
    for name in dirs + files:
      p = os.path.join(root, name)
      st = os.stat(p)
      out[p] = (st.st_size if name in files else 0, st.st_mtime_ns)
  return out


def test_reading_a_run_changes_nothing_in_it(tmp_path, caplog):
  """A reader of another run's saves (serving, a teacher's candidates) uses
  them read-only: a damaged newest best save is skipped with a warning, not
  deleted, and a folder without saves gets no checkpoint folders."""
  d = _two_saves(tmp_path / "c")
  fb = _biggest_file(os.path.join(d, "best", "2"))
  open(fb, "r+b").truncate(os.path.getsize(fb) // 2)
  before = _tree(d)
  caplog.set_level(logging.WARNING)
  ck = checkpointing.Checkpointer(d, read_only=True)
  best, meta = ck.restore_best(_state(0))
  ck.close()
  assert meta["epoch"] == 1 and float(best["w"][0, 0]) == 1.0
  assert "skipping it" in caplog.text
  assert _tree(d) == before
  empty = tmp_path / "empty"
  empty.mkdir()
  ck = checkpointing.Checkpointer(str(empty / "ckpt"), read_only=True)
  with pytest.raises(FileNotFoundError, match="no best checkpoint"):
    ck.restore_best(_state(0))
  ck.close()
  assert not os.listdir(empty)


def test_unverified_unreadable_save_falls_back(tmp_path, caplog):
  """A save without manifest (older code, or a kill before it was written)
  that Orbax cannot read gives way to an older one that it can."""
  d = str(tmp_path / "c")
  ck = checkpointing.Checkpointer(d)
  ck.save(1, _state(1), {"epoch": 1})
  ck.save(2, _state(2), {"epoch": 2})
  ck.close()
  os.unlink(os.path.join(d, "latest", "2", checkpointing.MANIFEST))
  f = _biggest_file(os.path.join(d, "latest", "2"))
  open(f, "r+b").truncate(os.path.getsize(f) // 2)
  caplog.set_level(logging.WARNING)
  ck = checkpointing.Checkpointer(d)
  _, meta = ck.restore(_state(0))
  assert meta["epoch"] == 1 and "cannot be read" in caplog.text
  assert ck.latest_step() == 1      # step 2 deleted
  ck.close()


# ----------------------------------------------------------------------------
# 4. Disk full mid-save; a cut metrics.jsonl line
# ----------------------------------------------------------------------------
def test_disk_full_mid_save_leaves_a_resumable_workdir(straight_run, tmp_path,
                                                       monkeypatch):
  """The epoch-3 save hits a file-size limit (EFBIG, as a full disk gives
  ENOSPC); the run stops with a CheckpointError and the rerun resumes from
  epoch 2 to the straight run's results."""
  c, _, want = straight_run
  real = checkpointing.Checkpointer._save  # pylint: disable=protected-access

  def full_disk_at_epoch_3(self, kind, step, state, meta):
    if kind != "latest" or meta.get("epoch") != 3:
      return real(self, kind, step, state, meta)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
      return real(self, kind, step, state, meta)
    finally:
      resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
      signal.signal(signal.SIGXFSZ, old)

  monkeypatch.setattr(checkpointing.Checkpointer, "_save",
                      full_disk_at_epoch_3)
  wd = str(tmp_path / "wd")
  with pytest.raises(checkpointing.CheckpointError,
                     match="previous save .step 30. is kept"):
    train.train_and_evaluate(c, wd)
  monkeypatch.undo()
  assert not os.path.exists(os.path.join(wd, rundir.LOCK_FILE))
  got = train.train_and_evaluate(c, wd)
  assert got["valid"] == want["valid"] and got["test"] == want["test"]


def test_cut_last_metrics_line_is_dropped_with_a_warning(tmp_path, caplog):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"epoch": 1, "x": 1}\n{"epoch": 2, "x": 2}\n{"epoch": 3, "x')
  caplog.set_level(logging.WARNING)
  log = runlog.RunLog(str(tmp_path), resume_epoch=2)
  log.close()
  assert f"{path}:3: dropping a cut last line" in caplog.text
  assert [r["epoch"] for r in rundir.read_jsonl(str(path))] == [1, 2]
  path.write_text('{"epoch": 1}\n{"epo\n{"epoch": 3}\n')
  with pytest.raises(errors.UserError, match=f"{path}:2: not a JSON record"):
    rundir.read_jsonl(str(path))


# ----------------------------------------------------------------------------
# 5, 7, 11. Data
# ----------------------------------------------------------------------------
def _load(tmp_path, content: bytes, **kw):
  f = tmp_path / "d.txt"
  f.write_bytes(content)
  from ml_collections import ConfigDict  # pylint: disable=g-import-not-at-top
  return data.load(ConfigDict(dict(name="mine", dir="", path=str(f),
                                   format="auto", download=False, **kw))), f


def test_degenerate_data_is_refused_naming_the_file(tmp_path):
  three = b"".join(f"{u} {i}\n".encode() for u in (1, 2, 3)
                   for i in (1, 2, 3))
  with pytest.raises(data.DataError, match="0 training steps") as e:
    _load(tmp_path, three)
  assert str(tmp_path / "d.txt") in str(e.value)
  short = b"1 1\n1 2\n2 1\n"
  with pytest.raises(data.DataError, match="drops them all") as e:
    _load(tmp_path, short, drop_short_users=True)
  assert str(tmp_path / "d.txt") in str(e.value)


def _pairs(users=300, per=8):
  return "".join(f"{u} {(u * 7 + k) % 50 + 1}\n" for u in range(1, users + 1)
                 for k in range(per)).encode()


def test_cr_line_ends_parse_and_one_line_files_are_refused():
  good = _pairs()
  want = interactions.parse_interactions(good)
  for ends in (b"\r\n", b"\r"):
    got = interactions.parse_interactions(good.replace(b"\n", ends))
    assert all(np.array_equal(a, b) for a, b in zip(got[:2], want[:2]))
  with pytest.raises(data.DataError, match="line breaks are probably "
                     "missing") as e:
    interactions.parse_interactions(good.replace(b"\n", b" "), source="x.txt")
  assert str(e.value).startswith("x.txt: ")


def test_bad_line_deep_in_a_pair_file_is_reported_at_its_line():
  lines = _pairs().splitlines(keepends=True)
  lines[1999] = b"5 6 7\n"
  with pytest.raises(data.DataError, match=r"^x.txt:2000: 3 fields"):
    interactions.parse_interactions(b"".join(lines), source="x.txt")


def test_sparse_item_ids_warn_with_the_cost(caplog):
  users = np.repeat(np.arange(1, 11), 5)
  items = np.arange(1, 51)
  items[-1] = 150_000
  caplog.set_level(logging.WARNING)
  data.from_interactions(users, items, "x", source="x.txt")
  assert "x.txt: item ids are sparse" in caplog.text
  assert "3000x the items" in caplog.text


def test_caser_window_longer_than_max_len_is_refused():
  from configs import tiny  # pylint: disable=g-import-not-at-top
  c = tiny.get_config()
  c.model.name = "caser"
  c.model.caser_window = 60
  with pytest.raises(config_lib.ConfigError, match="model.caser_window: must "
                     r"be at most data.max_len \(50\), got 60"):
    config_lib.validate(c)
  err = config_lib.unknown_field_error(c, "train.batchsize")
  assert "did you mean config.train.batch_size" in str(err)


# ----------------------------------------------------------------------------
# 6. Data fingerprint
# ----------------------------------------------------------------------------
def test_resuming_on_other_data_is_refused_moved_data_accepted(tmp_path):
  wd = str(tmp_path / "wd")
  os.makedirs(wd)
  a = tmp_path / "a.txt"
  a.write_bytes(_pairs())
  rundir.check_data(wd, data.read_interactions(str(a)))
  moved = tmp_path / "moved.txt.gz"
  import gzip  # pylint: disable=g-import-not-at-top
  moved.write_bytes(gzip.compress(_pairs()))
  rundir.check_data(wd, data.read_interactions(str(moved)))   # same content
  other = tmp_path / "b.txt"
  other.write_bytes(_pairs(per=9))
  with pytest.raises(rundir.DataMismatch) as e:
    rundir.check_data(wd, data.read_interactions(str(other)))
  msg = str(e.value)
  assert str(a) in msg and str(other) in msg and "sha256" in msg


def test_another_runs_data_check_records_and_advice(tmp_path, caplog):
  """check_run_data: the fingerprint when there is one (the caller's advice
  ends a refusal), else results.json's counts; an unreadable results.json
  is an error, not a skipped check; with neither file, a warning."""
  (tmp_path / "a.txt").write_bytes(_pairs())
  (tmp_path / "b.txt").write_bytes(_pairs(per=9))
  ds = data.read_interactions(str(tmp_path / "a.txt"))
  other = data.read_interactions(str(tmp_path / "b.txt"))
  fp = tmp_path / "fp"
  fp.mkdir()
  rundir.check_data(str(fp), ds)
  rundir.check_run_data(str(fp), ds)
  with pytest.raises(rundir.DataMismatch, match=r"sha256 .*Do this\.$"):
    rundir.check_run_data(str(fp), other, advice="Do this.")
  counts = tmp_path / "counts"
  counts.mkdir()
  (counts / "results.json").write_text(json.dumps({"dataset": {
      "users": ds.num_users, "actions": int(ds.items.size),
      "items": ds.num_items}}))
  rundir.check_run_data(str(counts), ds)
  with pytest.raises(rundir.DataMismatch, match="its results.json records"):
    rundir.check_run_data(str(counts), other)
  (counts / "results.json").write_text('{"dataset": ')
  with pytest.raises(errors.UserError, match="unreadable.*Do this"):
    rundir.check_run_data(str(counts), ds, advice="Do this.")
  caplog.set_level(logging.WARNING)
  rundir.check_run_data(str(tmp_path), ds)
  assert "its data is not checked" in caplog.text


# ----------------------------------------------------------------------------
# 8, 10, 12. Lock, exit codes, finished reruns (CLI subprocesses)
# ----------------------------------------------------------------------------
_HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from diff4rec_jax import rundir
with rundir.lock(sys.argv[2]):
  print("locked", flush=True)
  time.sleep(120)
"""


def _cli(*args, timeout=120):
  return subprocess.run(
      [sys.executable, "-m", "diff4rec_jax.main", "--config=configs/tiny.py",
       *args], cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
      timeout=timeout)


def _one_error_line(p):
  assert p.returncode == errors.USER_ERROR_EXIT, p.stderr[-2000:]
  assert "Traceback" not in p.stderr, p.stderr[-2000:]
  lines = [l for l in p.stderr.splitlines() if l.startswith("error: ")]
  assert len(lines) == 1, p.stderr[-2000:]
  return lines[0]


def test_second_process_on_a_workdir_is_refused_stale_lock_taken(tmp_path):
  wd = str(tmp_path / "wd")
  os.makedirs(wd)
  holder = subprocess.Popen([sys.executable, "-c", _HOLDER, REPO, wd],
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    line = _one_error_line(_cli(f"--workdir={wd}"))
    assert f"in use by process {holder.pid}" in line
  finally:
    holder.kill()                       # kill -9: the lock stays behind
    holder.wait(timeout=30)
  assert os.path.exists(os.path.join(wd, rundir.LOCK_FILE))
  p = subprocess.run([sys.executable, "-c", _HOLDER.replace(
      "time.sleep(120)", "pass"), REPO, wd], capture_output=True, text=True,
                     timeout=60)
  assert p.returncode == 0 and "stale lock of process" in p.stderr
  assert not os.path.exists(os.path.join(wd, rundir.LOCK_FILE))


def test_user_errors_exit_2_with_one_line(tmp_path):
  line = _one_error_line(_cli(f"--workdir={tmp_path}/wd",
                              "--config.train.nonexistent=1", timeout=60))
  assert "config.train.nonexistent: no such field" in line
  bad = tmp_path / "three.txt"
  bad.write_text("".join(f"{u} {i}\n" for u in (1, 2) for i in (1, 2, 3)))
  line = _one_error_line(_cli(f"--workdir={tmp_path}/wd",
                              f"--config.data.path={bad}", timeout=60))
  assert str(bad) in line and "0 training steps" in line


def test_rerun_of_a_finished_workdir_changes_nothing(straight_run):
  c, wd, want = straight_run
  metrics = os.path.join(wd, "metrics.jsonl")
  before = (open(metrics).read(),
            open(os.path.join(wd, "results.json")).read())
  got = train.train_and_evaluate(c, wd)
  assert got == json.loads(before[1])
  assert got["valid"] == want["valid"]
  assert (open(metrics).read(),
          open(os.path.join(wd, "results.json")).read()) == before
  assert sum(1 for l in before[0].splitlines() if '"final"' in l) == 1


def test_non_finite_loss_before_any_checkpoint_says_so():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  class NoCheckpoint:
    directory = "wd/ckpt/recommender"

    def latest_step(self):
      return None

  with pytest.raises(FloatingPointError) as e:
    loop.check_finite([jnp.float32(1.0), jnp.float32(np.nan)],
                      {"step": jnp.int32(2)}, NoCheckpoint())
  assert "at step 2" in str(e.value) and "step None" not in str(e.value)
  assert "No checkpoint was saved before it" in str(e.value)
