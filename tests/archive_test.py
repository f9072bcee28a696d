"""Tests for benchmarks/archive.py: finished runs' small files kept in the
repository and put back (hand-made run folders in tmp_path)."""

import json
import os
import shutil
import subprocess

import pytest

from benchmarks import archive
from benchmarks import grid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(path, text="x"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


def _run(folder, finished=True):
  res = {"valid": {"NDCG@10": 0.02}, "test": {"NDCG@10": 0.01},
         "best_epoch": 5, "epochs_run": 10}
  _write(os.path.join(folder, "config.json"), json.dumps({"mode": "aug"}))
  _write(os.path.join(folder, "metrics.jsonl"),
         json.dumps({"epoch": 5, "valid/NDCG@10": 0.02}) + "\n")
  _write(os.path.join(folder, "generator", "generator_metrics.jsonl"), "{}\n")
  _write(os.path.join(folder, "ckpt", "5", "big.bin"), "0" * 1000)
  _write(os.path.join(folder, "augmented.npz"), "0" * 1000)
  if finished:
    _write(os.path.join(folder, "results.json"), json.dumps(res))


def test_save_keeps_small_files_of_finished_runs_only(tmp_path):
  runs, dest = str(tmp_path / "runs"), str(tmp_path / "archive")
  _run(os.path.join(runs, "paper", "yelp-sasrec-aug-s0"))
  _run(os.path.join(runs, "paper", "yelp-sasrec-aug-s1"), finished=False)
  # A phase of an unfinished cell has results of its own: not a run.
  _run(os.path.join(runs, "paper", "yelp-sasrec-aug-s1", "warmup"))
  _run(os.path.join(runs, "tune", "v1", "beauty-sasrec-aug-s0"))
  _run(os.path.join(runs, "wt-abc", "x"))            # a worktree: skipped
  _write(os.path.join(runs, "paper", "grid_log.jsonl"), '{"cell": "a"}\n')
  _write(os.path.join(runs, "paper", "augmentation_overrides.txt"), "--c=1")
  os.symlink(os.path.join(runs, "paper", "yelp-sasrec-aug-s0"),
             os.path.join(runs, "tune", "v1", "yelp-sasrec-aug-s0"))
  counts = archive.save(runs, dest)
  assert counts == {"runs": 2, "links": 1, "root files": 1,
                    "log records": 1}
  files = sorted(os.path.relpath(os.path.join(d, f), dest)
                 for d, _, fs in os.walk(dest) for f in fs)
  run = ["config.json", "generator/generator_metrics.jsonl",
         "metrics.jsonl", "results.json"]     # no fingerprint made here
  assert files == sorted(
      ["paper/augmentation_overrides.txt", "paper/grid_log.jsonl",
       "tune/v1/yelp-sasrec-aug-s0/link_to"] +
      [f"paper/yelp-sasrec-aug-s0/{f}" for f in run] +
      [f"tune/v1/beauty-sasrec-aug-s0/{f}" for f in run])
  with open(os.path.join(dest, "tune/v1/yelp-sasrec-aug-s0/link_to")) as f:
    assert f.read().strip() == "paper/yelp-sasrec-aug-s0"


def test_restore_puts_runs_back_and_leaves_existing_workdirs(tmp_path):
  runs, dest = str(tmp_path / "runs"), str(tmp_path / "archive")
  _run(os.path.join(runs, "paper", "yelp-sasrec-base-s0"))
  _run(os.path.join(runs, "paper", "yelp-sasrec-base-s1"))
  _write(os.path.join(runs, "paper", "grid_log.jsonl"),
         '{"cell": "yelp-sasrec-base-s0"}\n{"cell": "yelp-sasrec-base-s1"}\n')
  os.symlink(os.path.join(runs, "paper", "yelp-sasrec-base-s0"),
             os.path.join(runs, "paper", "link-sasrec-base-s0"))
  archive.save(runs, dest)
  # A fresh machine: only a rerun of s1 in progress, and a newer log.
  new = str(tmp_path / "new")
  _run(os.path.join(new, "paper", "yelp-sasrec-base-s1"), finished=False)
  _write(os.path.join(new, "paper", "grid_log.jsonl"),
         '{"cell": "yelp-sasrec-base-s1"}\n{"cell": "c"}\n')
  counts = archive.restore(dest, new)
  assert counts == {"runs": 1, "links": 1, "root files": 0,
                    "log records": 1, "left alone": 1}
  s0 = os.path.join(new, "paper", "yelp-sasrec-base-s0")
  assert archive.is_finished(s0)
  assert not os.path.exists(os.path.join(s0, "ckpt"))
  assert os.path.exists(os.path.join(s0, archive.MARK_FILE))
  assert not archive.is_finished(
      os.path.join(new, "paper", "yelp-sasrec-base-s1"))   # left alone
  link = os.path.join(new, "paper", "link-sasrec-base-s0")
  assert os.path.realpath(link) == os.path.realpath(s0)
  with open(os.path.join(new, "paper", "grid_log.jsonl")) as f:
    assert f.read().splitlines() == ['{"cell": "yelp-sasrec-base-s1"}',
                                     '{"cell": "c"}',
                                     '{"cell": "yelp-sasrec-base-s0"}']
  # Restoring twice changes nothing.
  again = archive.restore(dest, new)
  assert again["runs"] == again["links"] == again["log records"] == 0
  # The grid counts the restored run as finished and says where it is from.
  cell = grid.Cell("yelp", "sasrec", "base", 0)
  st = grid.inspect_cell(cell, os.path.join(new, "paper"))
  assert st.status == "done" and "restored from the archive" in st.detail


def test_cli_refuses_a_missing_source(tmp_path, capsys):
  assert archive.main(["save", str(tmp_path / "nope"), str(tmp_path)]) == 2
  assert "is not a folder" in capsys.readouterr().err


def test_loop_saves_while_a_queue_runs_and_once_after(tmp_path):
  runs, dest = str(tmp_path / "runs"), str(tmp_path / "archive")
  _run(os.path.join(runs, "strong", "ml-1m-sasrec-base-s0"))
  # The queue: a process that init reaps (a child of this test would stay
  # a zombie, which kill -0 still finds).
  pid = subprocess.run(["bash", "-c", "sleep 1 > /dev/null & echo $!"],
                       capture_output=True, text=True).stdout.strip()
  _run(os.path.join(runs, "strong", "ml-1m-sasrec-base-s1"), finished=False)
  inflight = str(tmp_path / "inflight")
  env = dict(os.environ, ARCHIVE_EVERY_S="0.2", INFLIGHT=inflight)
  out = subprocess.run(
      ["bash", os.path.join(REPO, "benchmarks", "archive_loop.sh"), runs,
       dest, pid], env=env, capture_output=True, text=True, timeout=60)
  assert out.returncode == 0, out.stderr
  saves = [l for l in out.stdout.splitlines() if "archive.py save" in l]
  assert len(saves) >= 2          # at least one while running, one after
  assert archive.is_finished(
      os.path.join(dest, "strong", "ml-1m-sasrec-base-s0"))
  assert _listings(os.path.join(inflight, "strong")) == [
      "ml-1m-sasrec-base-s1" + archive.PACK_SUFFIX]


def test_no_pack_of_an_unfinished_run_is_committed():
  """results/inflight (archive.py carry) is for the next session's machine,
  not for the repository: 40 MB of checkpoints a cell."""
  if not os.path.isdir(os.path.join(REPO, ".git")):
    pytest.skip("not a git checkout")
  out = subprocess.run(["git", "-C", REPO, "ls-files", "results/inflight"],
                       capture_output=True, text=True, check=True)
  assert out.stdout == ""


def _log(records):
  return "".join(json.dumps(r) + "\n" for r in records)


def test_save_merges_logs_and_switches_between_link_and_run(tmp_path):
  runs, dest = str(tmp_path / "runs"), str(tmp_path / "archive")
  _run(os.path.join(runs, "strong", "b-sasrec-base-s0"))
  os.makedirs(os.path.join(runs, "paper"))
  os.symlink(os.path.join(runs, "strong", "b-sasrec-base-s0"),
             os.path.join(runs, "paper", "b-sasrec-base-s0"))
  old = {"cell": "x", "time": "2026-12-01T00:00:00"}
  new = {"cell": "y", "time": "2026-12-08T00:00:00"}
  _write(os.path.join(dest, "paper", "grid_log.jsonl"), _log([old]))
  _write(os.path.join(runs, "paper", "grid_log.jsonl"), _log([new]))
  # RUNS given through a link: the run links are still recognised.
  via = str(tmp_path / "via")
  os.symlink(runs, via)
  assert archive.save(via, dest)["links"] == 1
  with open(os.path.join(dest, "paper", "grid_log.jsonl")) as f:
    assert f.read() == _log([old, new])       # nothing dropped, in time
  # The link becomes a run of its own: the archive keeps the run only.
  link = os.path.join(runs, "paper", "b-sasrec-base-s0")
  os.unlink(link)
  _run(link)
  assert archive.save(runs, dest) == {"runs": 2, "links": 0,
                                      "root files": 0, "log records": 0}
  assert sorted(os.listdir(os.path.join(dest, "paper", "b-sasrec-base-s0"))
                ) == ["config.json", "generator", "metrics.jsonl",
                      "results.json"]
  new_runs = str(tmp_path / "new")
  archive.restore(dest, new_runs)
  assert not os.path.islink(os.path.join(new_runs, "paper",
                                         "b-sasrec-base-s0"))
  # And back to a link: the run's files go.
  shutil.rmtree(link)
  os.symlink(os.path.join(runs, "strong", "b-sasrec-base-s0"), link)
  archive.save(runs, dest)
  assert os.listdir(os.path.join(dest, "paper", "b-sasrec-base-s0")) == [
      "link_to"]


def test_restore_keeps_a_reruns_log_apart_from_the_lost_machines(tmp_path):
  runs, dest = str(tmp_path / "runs"), str(tmp_path / "archive")
  _run(os.path.join(runs, "paper", "y-sasrec-base-s0"))
  _run(os.path.join(runs, "paper", "y-sasrec-base-s1"))
  lost = [{"cell": "y-sasrec-base-s0", "time": "2026-12-01T00:00:00",
           "rc": 0},
          {"cell": "y-sasrec-base-s1", "time": "2026-12-02T00:00:00",
           "rc": 1, "error": "old failure"},
          {"cell": "y-sasrec-base-s2", "time": "2026-12-03T00:00:00",
           "rc": 143, "seconds": 1000}]
  _write(os.path.join(runs, "paper", "grid_log.jsonl"), _log(lost))
  archive.save(runs, dest)
  new = str(tmp_path / "new")
  _run(os.path.join(new, "paper", "y-sasrec-base-s1"), finished=False)
  mine = {"cell": "y-sasrec-base-s1", "time": "2026-12-08T00:00:00",
          "rc": 0, "stopped": "time limit"}
  _write(os.path.join(new, "paper", "grid_log.jsonl"), _log([mine]))
  archive.restore(dest, new)
  # s0 came back with its record, before the rerun's; the lost machine's
  # attempts of s1 (being rerun here) and of s2 (unfinished there, not
  # started here) stay out.
  with open(os.path.join(new, "paper", "grid_log.jsonl")) as f:
    assert f.read() == _log([lost[0], mine])
  # Restored runs are the archive's already: save leaves them out, so one
  # moved within RUNS does not come back as a new run.
  os.rename(os.path.join(new, "paper", "y-sasrec-base-s0"),
            os.path.join(new, "paper", "old-sasrec-base-s0"))
  assert archive.save(new, dest)["runs"] == 0
  assert not os.path.exists(os.path.join(dest, "paper", "old-sasrec-base-s0"))


def test_restore_from_a_missing_archive_changes_nothing(tmp_path, capsys):
  assert archive.main(["restore", str(tmp_path / "none"),
                       str(tmp_path / "runs")]) == 0
  assert not os.path.exists(tmp_path / "runs")
  assert "nothing to restore" in capsys.readouterr().out


def test_a_restored_run_has_no_model_to_serve_or_teach(tmp_path):
  from diff4rec_jax import errors           # pylint: disable=g-import-not-at-top
  from diff4rec_jax import recommender      # pylint: disable=g-import-not-at-top
  runs, dest = str(tmp_path / "runs"), str(tmp_path / "archive")
  _run(os.path.join(runs, "paper", "y-sasrec-base-s0"))
  archive.save(runs, dest)
  new = str(tmp_path / "new")
  archive.restore(dest, new)
  wd = os.path.join(new, "paper", "y-sasrec-base-s0")
  with pytest.raises(errors.UserError, match="without its checkpoints"):
    recommender.restore_best_params(None, None, wd)


# -- carry: unfinished runs packed for the next machine ----------------------
def _save(ckpt, kind, step, size=100, manifest=True):
  """A hand-made checkpoint save: one data file (and its manifest)."""
  folder = os.path.join(ckpt, kind, str(step))
  _write(os.path.join(folder, "state", "data"), "0" * size)
  if manifest:
    _write(os.path.join(folder, "diff4rec_manifest.json"), "{}")


def _packed(listing):
  """The file names in the pack of `listing`, its parts joined."""
  import tarfile  # pylint: disable=g-import-not-at-top
  joined = listing + ".joined"
  archive._join_pack(listing, joined)  # pylint: disable=protected-access
  try:
    with tarfile.open(joined) as tar:
      return sorted(tar.getnames())
  finally:
    os.unlink(joined)


def _listings(folder):
  return sorted(f for f in os.listdir(folder)
                if f.endswith(archive.PACK_SUFFIX))


def test_carry_packs_what_a_resume_reads(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(archive, "MAX_CKPT_MB", 0.01)
  runs, dest = str(tmp_path / "runs"), str(tmp_path / "inflight")
  wd = os.path.join(runs, "paper", "y-sasrec-aug-s0")
  _run(wd, finished=False)
  shutil.rmtree(os.path.join(wd, "ckpt"))
  os.unlink(os.path.join(wd, "augmented.npz"))   # the copies: not yet made
  rec = os.path.join(wd, "ckpt", "recommender")
  _save(rec, "latest", 10)
  _save(rec, "latest", 20)
  _save(rec, "latest", 30, manifest=False)     # being written: not complete
  _save(rec, "best", 5)
  _save(rec, "best", 15)
  _save(rec, "best", 25)                      # after the resume's step 20
  _write(os.path.join(rec, "latest", "40.orbax-checkpoint-tmp-1", "x"))
  # A finished warm-up is read through its newest best save alone.
  warm = os.path.join(wd, "warmup")
  _write(os.path.join(warm, "results.json"), "{}")
  _save(os.path.join(warm, "ckpt", "recommender"), "latest", 8)
  _save(os.path.join(warm, "ckpt", "recommender"), "best", 4)
  _save(os.path.join(warm, "ckpt", "recommender"), "best", 8)
  # A generator still training whose saves are too big to carry.
  gen = os.path.join(wd, "generator")
  _save(os.path.join(gen, "ckpt", "generator"), "latest", 3, size=20000)
  _write(os.path.join(wd, "tb", "events"), "e")
  _write(os.path.join(wd, "run.lock"), "pid")
  # Files being written (pool.py, runner.py, atomic writes) stay out.
  for name in ("augmented.npz.tmp.npz", "augmented.npz.link",
               ".pool_order_e3.npy", ".metrics.jsonl.x.tmp"):
    _write(os.path.join(wd, name))
  _run(os.path.join(runs, "paper", "y-sasrec-aug-s1"))      # finished
  counts = archive.carry(runs, dest)
  assert counts["packed"] == 1 and counts["removed"] == 0
  assert "generator/ckpt/generator left out" in capsys.readouterr().out
  assert _listings(os.path.join(dest, "paper")) == [
      "y-sasrec-aug-s0" + archive.PACK_SUFFIX]
  pack = os.path.join(dest, "paper", "y-sasrec-aug-s0" + archive.PACK_SUFFIX)
  assert _packed(pack) == sorted([
      "config.json", "metrics.jsonl",
      "generator/generator_metrics.jsonl",
      "ckpt/recommender/latest/20/state/data",
      "ckpt/recommender/latest/20/diff4rec_manifest.json",
      "ckpt/recommender/best/15/state/data",
      "ckpt/recommender/best/15/diff4rec_manifest.json",
      "warmup/results.json",
      "warmup/ckpt/recommender/best/8/state/data",
      "warmup/ckpt/recommender/best/8/diff4rec_manifest.json"])
  # Once the copies are made, the phases that made them are not read:
  # only their metrics are packed.
  _write(os.path.join(wd, "augmented.npz"), "0" * 1000)
  _write(os.path.join(warm, "metrics.jsonl"), "{}\n")
  assert archive.carry(runs, dest)["packed"] == 1
  assert _packed(pack) == sorted([
      "augmented.npz", "config.json", "metrics.jsonl",
      "generator/generator_metrics.jsonl", "warmup/metrics.jsonl",
      "ckpt/recommender/latest/20/state/data",
      "ckpt/recommender/latest/20/diff4rec_manifest.json",
      "ckpt/recommender/best/15/state/data",
      "ckpt/recommender/best/15/diff4rec_manifest.json"])
  # Unchanged: not packed again; changed: packed again; finished: the
  # archive has it, and its pack goes.
  assert archive.carry(runs, dest)["unchanged"] == 1
  with open(os.path.join(wd, "metrics.jsonl"), "a") as f:
    f.write("{}\n")
  assert archive.carry(runs, dest)["packed"] == 1
  _write(os.path.join(wd, "results.json"),
         json.dumps({"valid": {"NDCG@10": 0.1}, "test": {"NDCG@10": 0.1}}))
  assert archive.carry(runs, dest)["removed"] == 1
  assert not os.path.exists(pack)


def test_restore_unpacks_unfinished_runs_after_finished_ones(tmp_path,
                                                             capsys):
  runs, arch = str(tmp_path / "runs"), str(tmp_path / "archive")
  inflight = str(tmp_path / "inflight")
  for cell in ("y-sasrec-aug-s0", "y-sasrec-aug-s1", "y-sasrec-aug-s2"):
    _run(os.path.join(runs, "paper", cell), finished=False)
  log = [{"cell": c, "time": f"2026-12-0{i + 1}T00:00:00", "rc": 143}
         for i, c in enumerate(("y-sasrec-aug-s0", "y-sasrec-aug-s1",
                                "y-sasrec-aug-s2"))]
  _write(os.path.join(runs, "paper", "grid_log.jsonl"), _log(log))
  archive.carry(runs, inflight)
  archive.save(runs, arch)
  # s2 finished after its last pack: the archive's finished run wins.
  _run(os.path.join(runs, "paper", "y-sasrec-aug-s2"))
  archive.save(runs, arch)
  with open(os.path.join(inflight, "paper",
                         "y-sasrec-aug-s1" + archive.PACK_SUFFIX), "wb") as f:
    f.write(b"not a pack")
  new = str(tmp_path / "new")
  _run(os.path.join(new, "paper", "y-sasrec-aug-s0"), finished=False)
  counts = archive.restore(arch, new, inflight)
  assert "y-sasrec-aug-s1.pack.json could not be unpacked" in (
      capsys.readouterr().out)
  assert counts["runs"] == 1 and counts["unfinished runs"] == 0
  assert archive.is_finished(os.path.join(new, "paper", "y-sasrec-aug-s2"))
  assert not os.path.exists(os.path.join(new, "paper", "y-sasrec-aug-s1"))
  assert not [d for d in os.listdir(os.path.join(new, "paper"))
              if d.endswith(".restoring")]
  # With a good pack, the unfinished run comes back as it was, with the
  # lost machine's attempts of it in the log (its time so far).
  shutil.rmtree(new)
  archive._remove_pack(os.path.join(  # pylint: disable=protected-access
      inflight, "paper", "y-sasrec-aug-s1" + archive.PACK_SUFFIX))
  archive.carry(runs, inflight)
  counts = archive.restore(arch, new, inflight)
  assert counts["unfinished runs"] == 2 and counts["runs"] == 1
  wd = os.path.join(new, "paper", "y-sasrec-aug-s1")
  assert not archive.is_finished(wd)
  assert not os.path.exists(os.path.join(wd, archive.MARK_FILE))
  with open(os.path.join(wd, "ckpt", "5", "big.bin")) as f:
    assert f.read() == "0" * 1000
  with open(os.path.join(new, "paper", "grid_log.jsonl")) as f:
    assert f.read() == _log(log)


def test_a_carried_run_resumes_to_the_same_results(straight_run, tmp_path):
  from diff4rec_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import runlog  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import train  # pylint: disable=g-import-not-at-top
  c, _, res = straight_run
  runs, inflight = str(tmp_path / "runs"), str(tmp_path / "inflight")
  wd = os.path.join(runs, "grid", "tiny-sasrec-base-s0")
  with pytest.raises(runlog.Interrupted):
    train.train_and_evaluate(c, wd, stop_after_epochs=2)
  ckpt_dir = os.path.join(wd, "ckpt", "recommender")
  stopped_at = checkpointing.Checkpointer(ckpt_dir).latest_step()
  assert stopped_at
  assert archive.carry(runs, inflight)["packed"] == 1
  shutil.rmtree(runs)                          # the machine is gone
  counts = archive.restore(str(tmp_path / "no_archive"), runs, inflight)
  assert counts["unfinished runs"] == 1
  # It resumes from where it stopped, not from the start.
  assert checkpointing.Checkpointer(ckpt_dir).latest_step() == stopped_at
  res2 = train.train_and_evaluate(c, wd)
  assert res2["best_epoch"] == res["best_epoch"]
  assert res2["valid"] == res["valid"] and res2["test"] == res["test"]


def _cell(runs, name="y-sasrec-aug-s0"):
  """An unfinished run with one complete latest and best save."""
  wd = os.path.join(runs, "paper", name)
  _run(wd, finished=False)
  shutil.rmtree(os.path.join(wd, "ckpt"))
  rec = os.path.join(wd, "ckpt", "recommender")
  _save(rec, "latest", 10)
  _save(rec, "best", 10)
  return wd, rec


def test_a_pack_cut_by_a_pruned_save_keeps_the_previous_one(
    tmp_path, monkeypatch, capsys):
  runs, dest = str(tmp_path / "runs"), str(tmp_path / "inflight")
  wd, rec = _cell(runs)
  archive.carry(runs, dest)
  pack = os.path.join(dest, "paper", "y-sasrec-aug-s0" + archive.PACK_SUFFIX)
  before = _packed(pack)
  # The next save (step 20) is listed, then pruned before it is read.
  _save(rec, "latest", 20)
  real = archive._pack_members

  def prune_after_listing(*a, **k):
    members = real(*a, **k)
    shutil.rmtree(os.path.join(rec, "latest", "20", "state"))
    return members
  monkeypatch.setattr(archive, "_pack_members", prune_after_listing)
  assert archive.carry(runs, dest)["packed"] == 0
  assert "changed while it was packed" in capsys.readouterr().out
  assert _packed(pack) == before
  assert not [f for f in os.listdir(os.path.dirname(pack))
              if f.endswith(".tmp")]
  assert len([f for f in os.listdir(os.path.dirname(pack))
              if f.endswith(archive._PART_SUFFIX)]) == 1  # pylint: disable=protected-access


def test_a_save_made_while_listing_is_packed_next_time(tmp_path,
                                                       monkeypatch):
  runs, dest = str(tmp_path / "runs"), str(tmp_path / "inflight")
  wd, rec = _cell(runs)
  real = archive._pack_members

  def save_after_listing(*a, **k):
    members = real(*a, **k)
    _save(rec, "latest", 20)              # a save ends after the walk
    return members
  monkeypatch.setattr(archive, "_pack_members", save_after_listing)
  archive.carry(runs, dest)
  monkeypatch.setattr(archive, "_pack_members", real)
  assert archive.carry(runs, dest)["packed"] == 1
  pack = os.path.join(dest, "paper", "y-sasrec-aug-s0" + archive.PACK_SUFFIX)
  assert "ckpt/recommender/latest/20/diff4rec_manifest.json" in _packed(pack)


def test_carry_removes_packs_only_once_they_are_not_needed(tmp_path):
  runs, dest = str(tmp_path / "runs"), str(tmp_path / "inflight")
  arch = str(tmp_path / "archive")
  wd, _ = _cell(runs)
  wd1, _ = _cell(runs, "y-sasrec-aug-s1")
  archive.carry(runs, dest, arch)
  pack = os.path.join(dest, "paper", "y-sasrec-aug-s0" + archive.PACK_SUFFIX)
  pack1 = os.path.join(dest, "paper", "y-sasrec-aug-s1" + archive.PACK_SUFFIX)
  # Finished, but not yet in the archive: the pack stays until it is.
  _write(os.path.join(wd, "results.json"),
         json.dumps({"valid": {"NDCG@10": 0.1}, "test": {"NDCG@10": 0.1}}))
  assert archive.carry(runs, dest, arch)["removed"] == 0
  assert os.path.isfile(pack)
  archive.save(runs, arch)
  assert archive.carry(runs, dest, arch)["removed"] == 1
  assert not os.path.exists(pack)
  # A RUNS without this grid folder removes nothing; a workdir deleted
  # from the grid folder takes its pack with it.
  assert archive.carry(str(tmp_path / "other"), dest, arch)["removed"] == 0
  assert os.path.isfile(pack1)
  shutil.rmtree(wd1)
  assert archive.carry(runs, dest, arch)["removed"] == 1
  assert not os.path.exists(pack1)


def test_a_finished_phase_left_out_is_packed_as_unfinished(tmp_path,
                                                         monkeypatch):
  monkeypatch.setattr(archive, "MAX_CKPT_MB", 0.01)
  runs, dest = str(tmp_path / "runs"), str(tmp_path / "inflight")
  wd, _ = _cell(runs)
  os.unlink(os.path.join(wd, "augmented.npz"))   # the copies: not yet made
  warm = os.path.join(wd, "warmup")
  _write(os.path.join(warm, "results.json"), "{}")
  _write(os.path.join(warm, "metrics.jsonl"), "{}\n")
  _save(os.path.join(warm, "ckpt", "recommender"), "best", 8, size=20000)
  # A pack cut off by a kill an hour ago: its temporary file and the parts
  # that no listing names go.
  stale = os.path.join(dest, "paper", ".y.abc.tmp")
  orphan = os.path.join(dest, "paper", "y.1a.000" + archive._PART_SUFFIX)  # pylint: disable=protected-access
  for path in (stale, orphan):
    _write(path)
    os.utime(path, (0, 0))
  archive.carry(runs, dest)
  names = _packed(os.path.join(dest, "paper",
                               "y-sasrec-aug-s0" + archive.PACK_SUFFIX))
  assert "warmup/metrics.jsonl" in names
  assert "warmup/results.json" not in names      # so the warm-up reruns
  assert not [n for n in names if n.startswith("warmup/ckpt")]
  assert not os.path.exists(stale) and not os.path.exists(orphan)


def test_a_big_pack_travels_in_parts(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(archive, "PART_MB", 0.001)        # 1 KiB parts
  runs, dest = str(tmp_path / "runs"), str(tmp_path / "inflight")
  wd, rec = _cell(runs)
  with open(os.path.join(wd, "augmented.npz"), "wb") as f:
    f.write(os.urandom(5000))                 # does not compress
  archive.carry(runs, dest)
  folder = os.path.join(dest, "paper")
  listing = os.path.join(folder, "y-sasrec-aug-s0" + archive.PACK_SUFFIX)
  with open(listing) as f:
    first = json.load(f)["parts"]
  assert len(first) > 4 and sorted(first) == sorted(
      f for f in os.listdir(folder) if f.endswith(archive._PART_SUFFIX))  # pylint: disable=protected-access
  # Packed again: the new parts replace the old ones.
  _save(rec, "latest", 20)
  archive.carry(runs, dest)
  with open(listing) as f:
    second = json.load(f)["parts"]
  assert not set(first) & set(second)
  assert sorted(second) == sorted(
      f for f in os.listdir(folder) if f.endswith(archive._PART_SUFFIX))  # pylint: disable=protected-access
  new = str(tmp_path / "new")
  assert archive.restore(str(tmp_path / "none"), new,
                         dest)["unfinished runs"] == 1
  with open(os.path.join(new, "paper", "y-sasrec-aug-s0",
                         "augmented.npz"), "rb") as f, open(
                             os.path.join(wd, "augmented.npz"), "rb") as g:
    assert f.read() == g.read()
  # A part that did not travel whole: the cell starts over, with a line.
  with open(os.path.join(folder, second[1]), "ab") as f:
    f.write(b"x")
  shutil.rmtree(new)
  assert archive.restore(str(tmp_path / "none"), new,
                         dest)["unfinished runs"] == 0
  assert "do not match its listing's checksum" in capsys.readouterr().out
  assert not os.path.exists(os.path.join(new, "paper", "y-sasrec-aug-s0"))


def test_save_with_inflight_packs_and_removes_finished_packs(tmp_path):
  """archive_loop.sh's one command: save, then carry with the archive as
  the proof that a finished run's pack may go."""
  runs, arch = str(tmp_path / "runs"), str(tmp_path / "archive")
  inflight = str(tmp_path / "inflight")
  wd, _ = _cell(runs)
  args = ["save", runs, arch, f"--inflight={inflight}"]
  assert archive.main(args) == 0
  assert _listings(os.path.join(inflight, "paper")) == [
      "y-sasrec-aug-s0" + archive.PACK_SUFFIX]
  _write(os.path.join(wd, "results.json"),
         json.dumps({"valid": {"NDCG@10": 0.1}, "test": {"NDCG@10": 0.1}}))
  assert archive.main(args) == 0
  assert archive.is_finished(os.path.join(arch, "paper", "y-sasrec-aug-s0"))
  assert _listings(os.path.join(inflight, "paper")) == []
  assert not os.listdir(os.path.join(inflight, "paper"))
