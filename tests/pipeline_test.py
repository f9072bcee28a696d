"""The full Diff4Rec pipeline on ML-100K: generator -> warm-up -> K copies
-> similarities -> curriculum-scheduled training, and its export file."""

import os

import numpy as np
import pytest

from diff4rec_jax import pool as pool_lib

from diff4rec_jax import runlog

from diff4rec_jax import train


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, data_dir):
  from configs import tiny  # pylint: disable=g-import-not-at-top
  c = tiny.get_config()
  c.data.dir = data_dir
  c.mode = "diff4rec"
  c.train.num_epochs = 2
  c.generator.epochs = 1
  c.augment.warmup_epochs = 1
  c.augment.num_copies = 4
  wd = str(tmp_path_factory.mktemp("pipeline"))
  return c, wd, train.train_and_evaluate(c, wd)


def test_export_file(pipeline_run):
  c, wd, res = pipeline_run
  assert res["test"]["HR@10"] > 0
  with np.load(os.path.join(wd, pool_lib.AUGMENTED_FILE)) as z:
    copies, orig, sim, rank = z["copies"], z["orig"], z["sim"], z["rank"]
  u, k, l = copies.shape
  assert (u, k, l) == (943, 4, c.data.max_len) and orig.shape == (u, l)
  # Copies keep each user's length and padding.
  np.testing.assert_array_equal((copies > 0).sum(-1),
                                np.repeat((orig > 0).sum(-1)[:, None], k, 1))
  # Rank 0 is the most similar copy; ranks are a permutation.
  assert sorted(rank.ravel().tolist()) == list(range(u * k))
  flat_sim = sim.ravel()[np.argsort(rank.ravel())]
  assert (np.diff(flat_sim) <= 1e-7).all()
  # The generator's top-M and the warm-up run were written on the way.
  assert os.path.exists(os.path.join(wd, "generator", "generator_topm.npz"))
  assert os.path.exists(os.path.join(wd, "warmup", "results.json"))


def test_curriculum_admits_easy_copies_first(pipeline_run):
  c, wd, _ = pipeline_run
  with np.load(os.path.join(wd, pool_lib.AUGMENTED_FILE)) as z:
    copies, sim = z["copies"], z["sim"]
  pool = pool_lib.make_pool(c, copies, sim)  # pylint: disable=protected-access
  total = 100
  first = pool.admitted(0, total)
  assert first == int(np.ceil(c.augment.pacing_start * pool.order.size))
  assert pool.admitted(total, total) == pool.order.size
  drawn = pool.draw(0, total, 256)["aug_inputs"]
  # At step 0 only the easiest `first` copies can be drawn.
  easiest = {tuple(r) for r in pool.copies[pool.order[:first]]}
  inputs = {tuple(r) for r in pool.copies[pool.order[:first]][:, :-1]}
  assert all(tuple(r[1:]) in inputs for r in drawn) and easiest
  # The same step draws the same copies (resumable).
  np.testing.assert_array_equal(drawn, pool.draw(0, total, 256)["aug_inputs"])


def test_rescoring_resumes_exactly(pipeline_run, tmp_path):
  """rescore_every: the curriculum is re-sorted with the current model each
  epoch, and a run stopped after epoch 1 resumes with that order."""
  import json  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  c, wd, _ = pipeline_run
  c = c.copy_and_resolve_references()
  c.augment.rescore_every = 1
  runs = {}
  for name in ("straight", "resumed"):
    d = tmp_path / name
    d.mkdir()
    # Same pool settings: the copies are reused, no generator or warm-up.
    shutil.copy(os.path.join(wd, pool_lib.AUGMENTED_FILE), d)
    if name == "resumed":
      with pytest.raises(runlog.Interrupted):
        train.train_and_evaluate(c, str(d), stop_after_epochs=1)
    runs[name] = train.train_and_evaluate(c, str(d))
    assert not os.path.exists(d / "generator")
  a, b = runs["straight"], runs["resumed"]
  assert a["valid"] == b["valid"] and a["test"] == b["test"]
  d = tmp_path / "straight"
  o1 = np.load(d / "pool_order_e1.npy")
  with np.load(d / pool_lib.AUGMENTED_FILE) as z:
    initial = np.argsort(z["rank"].ravel())
  assert sorted(o1.tolist()) == list(range(o1.size))
  assert not np.array_equal(o1, initial)     # the model's view changed it
  lines = [json.loads(l) for l in open(d / "metrics.jsonl")]
  assert [l["epoch"] for l in lines if "train_loss" in l] == [1, 2]


def test_a_carried_augmented_run_resumes_from_its_copies(pipeline_run,
                                                         tmp_path):
  """benchmarks/archive.py carry: a diff4rec run packed mid-training (its
  generator and warm-up left behind, the copies kept) ends on a new
  machine as the uninterrupted run."""
  import shutil  # pylint: disable=g-import-not-at-top
  import tarfile  # pylint: disable=g-import-not-at-top
  from benchmarks import archive  # pylint: disable=g-import-not-at-top
  c, wd, res = pipeline_run
  runs, inflight = tmp_path / "runs", tmp_path / "inflight"
  cell = runs / "paper" / "tiny-sasrec-diff4rec-s0"
  cell.mkdir(parents=True)
  shutil.copy(os.path.join(wd, pool_lib.AUGMENTED_FILE), cell)
  for phase in ("generator", "warmup"):
    shutil.copytree(os.path.join(wd, phase), cell / phase)
  with pytest.raises(runlog.Interrupted):
    train.train_and_evaluate(c, str(cell), stop_after_epochs=1)
  assert archive.carry(str(runs), str(inflight))["packed"] == 1
  joined = str(tmp_path / "joined.tar.gz")
  archive._join_pack(  # pylint: disable=protected-access
      str(inflight / "paper" / (cell.name + archive.PACK_SUFFIX)), joined)
  with tarfile.open(joined) as t:
    names = t.getnames()
  assert "generator/generator_metrics.jsonl" in names
  assert not [n for n in names if n.startswith(("generator/ckpt",
                                                "warmup/ckpt"))
              or n.endswith("generator_topm.npz")]
  shutil.rmtree(runs)                          # the machine is gone
  archive.restore(str(tmp_path / "no_archive"), str(runs), str(inflight))
  res2 = train.train_and_evaluate(c, str(cell))
  assert res2["valid"] == res["valid"] and res2["test"] == res["test"]
