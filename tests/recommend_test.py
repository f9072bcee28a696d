"""Issue 24: a trained model in use, and one's own data file.

One tiny run on a hand-made per-user file (`toys.txt`, 40 users, 30 items,
raw item ids `B0001`..`B0030` in `toys_item_map.tsv`) serves every test: it
starts the way a new user does (`data.name=toys`, which fails), then with
`data.path` in the same workdir. Recommendations are checked against a
numpy reference computed from the model's states; the CLI, new histories,
the export and the progress lines are checked on the same run.
"""

import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, subprocess_env

NUM_USERS, NUM_ITEMS = 40, 30


def _write_toys(d):
  rng = np.random.default_rng(0)
  lines = []
  for u in range(1, NUM_USERS + 1):
    n = int(rng.integers(4, 12))
    items = rng.choice(np.arange(1, NUM_ITEMS + 1), n, replace=False)
    lines.append(f"{u} " + " ".join(map(str, items)))
  (d / "toys.txt").write_text("\n".join(lines) + "\n")
  (d / "toys_item_map.tsv").write_text(
      "item_id\traw_item_id\n" +
      "".join(f"{i}\tB{i:04d}\n" for i in range(1, NUM_ITEMS + 1)))
  return {int(l.split()[0]): [int(x) for x in l.split()[1:]] for l in lines}


def _config():
  from configs import tiny  # pylint: disable=g-import-not-at-top
  c = tiny.get_config()
  c.data.max_len = 10
  c.model.hidden = 16
  c.train.num_epochs = 2
  c.train.eval_every = 1
  c.train.batch_size = 16
  c.train.eval_batch_size = 16
  c.train.eval_item_chunk = 32
  return c


class _Lines(logging.Handler):
  def __init__(self):
    super().__init__(logging.INFO)
    self.lines = []

  def emit(self, record):
    self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """The new user's two tries in one workdir; returns a dict of what
  happened: the first error, the workdir after it, results, log lines."""
  from diff4rec_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import runlog
  from diff4rec_jax import train  # pylint: disable=g-import-not-at-top
  d = tmp_path_factory.mktemp("toys_data")
  seqs = _write_toys(d)
  wd = str(tmp_path_factory.mktemp("toys_run") / "run")
  out = {"data_dir": d, "wd": wd, "seqs": seqs}
  # First try: a name, as for the built-in datasets (and another setting
  # that the second try drops: a config.json written now would refuse it).
  c = _config()
  c.data.name = "toys"
  c.data.dir = str(d)
  c.model.hidden = 24
  with pytest.raises(data_lib.DataError) as e:
    train.train_and_evaluate(c, wd)
  out["error"] = e.value
  out["workdir_after_error"] = os.path.exists(wd) and os.listdir(wd)
  # Second try: data.path, the name left at the config's default.
  c = _config()
  c.data.path = str(d / "toys.txt")
  handler = _Lines()
  loggers = [logging.getLogger("absl"), logging.getLogger()]
  levels = [l.level for l in loggers]
  old = runlog.PROGRESS_SECONDS
  runlog.PROGRESS_SECONDS = 0.0       # a progress line after every step
  for l in loggers:
    l.setLevel(logging.INFO)
  loggers[1].addHandler(handler)        # absl's records propagate to it
  try:
    out["results"] = train.train_and_evaluate(c, wd)
  finally:
    runlog.PROGRESS_SECONDS = old
    loggers[1].removeHandler(handler)
    for l, lv in zip(loggers, levels):
      l.setLevel(lv)
  out["lines"] = handler.lines
  return out


# -- bring your own data; a failed start leaves the workdir ---------------
def test_unknown_name_is_one_clear_message(run):
  e = run["error"]
  msg = str(e)
  assert "'toys' is not a built-in dataset" in msg
  assert "--config.data.path=FILE" in msg
  # The file beside it is named as the way out.
  assert f"--config.data.path={run['data_dir'] / 'toys.txt'}" in msg
  assert e.__cause__ is None and e.__context__ is None   # no chain


def test_failed_start_leaves_workdir_then_corrected_command_runs(run):
  assert not run["workdir_after_error"]          # no config.json, nothing
  res = run["results"]
  assert res["epochs_run"] == 2
  # Named after the file, not the config's default ('ml-100k').
  assert res["dataset"]["name"] == "toys"
  assert res["config"]["data"]["name"] == "toys"
  with open(os.path.join(run["wd"], "config.json")) as f:
    assert json.load(f)["data"]["name"] == "toys"
  assert res["dataset"]["users"] == NUM_USERS


def test_dataset_name_rule():
  import ml_collections  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  def name(n, p):
    return data_lib.dataset_name(ml_collections.ConfigDict(
        {"name": n, "path": p}))
  assert name("beauty", "") == "beauty"
  assert name("beauty", "/x/toys.txt.gz") == "toys"       # config default
  assert name("ml-1m", "my.data.tsv") == "my.data"
  assert name("games", "/x/toys.txt.gz") == "games"       # given: kept
  assert name("ml-1m", "/x/ml-1m.txt.gz") == "ml-1m"


def test_statistics_and_format_logged_before_training(run):
  lines = run["lines"]
  (stats,) = [l for l in lines if l.startswith("data: toys from")]
  assert "(per_user format): 40 users, 30 items" in stats
  first_epoch = next(i for i, l in enumerate(lines) if l.startswith("epoch"))
  assert lines.index(stats) < first_epoch


def test_progress_lines(run):
  lines = run["lines"]
  phases = [l.split(" (")[0] for l in lines if l.startswith("phase: ")]
  assert phases == ["phase: data", "phase: recommender", "phase: test"]
  steps = [l for l in lines if " steps  loss " in l]
  # PROGRESS_SECONDS = 0: one line per step of both epochs.
  (plan,) = [l for l in lines if l.startswith("training: ")]
  per_epoch = int(plan.split(", ")[1].split()[0])
  assert len(steps) == 2 * per_epoch
  assert "first step, compilation included" in steps[0]
  assert "eta" not in steps[0]            # compilation would skew it
  assert all("eta epoch" in l and "first step" not in l for l in steps[1:])
  # Evaluation batches too (3 validations and a test of 40 users in
  # batches of 16: 2 lines each, none after the last batch).
  evals = [l for l in lines if l.startswith("evaluation  ")]
  assert len(evals) == 4 * 2 and "3 batches  eta" in evals[0]


# -- recommending ----------------------------------------------------------
@pytest.fixture(scope="module")
def rec(run):
  from diff4rec_jax import recommend  # pylint: disable=g-import-not-at-top
  return recommend.load(run["wd"])


def _reference(r, seqs, k):
  """Top-k by numpy from the model's states at full width."""
  from diff4rec_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import models  # pylint: disable=g-import-not-at-top
  users = sorted(seqs)
  lens = np.array([len(seqs[u]) for u in users])
  flat = np.concatenate([seqs[u] for u in users])
  indptr = np.concatenate([[0], np.cumsum(lens)])
  x = data_lib.left_pad(flat, indptr[:-1], indptr[1:], r.max_len)
  hidden = np.asarray(r.model.apply({"params": r.params}, x, train=False))
  table = np.asarray(models.item_table(r.params))
  scores = hidden[:, -1] @ table.T                          # [U, N + 1]
  scores[:, 0] = -np.inf
  for j, u in enumerate(users):
    scores[j, seqs[u]] = -np.inf
  top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  return top, np.take_along_axis(scores, top, 1)


def test_recommend_users_matches_numpy_reference(run, rec):
  seqs = run["seqs"]
  users, items, scores = rec.recommend_users(k=5)
  assert list(users) == sorted(seqs)
  top, ref_scores = _reference(rec, seqs, 5)
  np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-5)
  assert (items == np.char.mod("B%04d", top)).all()           # raw ids
  for u, row in zip(users, items):
    # The whole sequence is seen: its last two (valid, test) items too.
    assert not set(row) & {f"B{i:04d}" for i in seqs[u]}


def test_recommend_histories_and_unknown_items(rec):
  from diff4rec_jax import recommend  # pylint: disable=g-import-not-at-top
  items, scores = rec.recommend([["B0003", "B0007"], ["B0010"]], k=4)
  assert items.shape == (2, 4) and (np.diff(scores, axis=1) <= 0).all()
  assert not {"B0003", "B0007"} & set(items[0])
  with pytest.raises(recommend.RecommendError,
                     match=r"history 1: item B9999 is not an item.*"
                     r"unknown_items='skip'"):
    rec.recommend([["B0003"], ["B0010", "B9999"]], k=4)
  with pytest.raises(recommend.RecommendError, match=r"for one history "
                     r"pass \[history\]"):
    rec.recommend(["B0003", "B0007"], k=4)
  skipped, s2 = rec.recommend([["B0003"], ["B0010", "B9999"]], k=4,
                              unknown_items="skip")
  plain, s3 = rec.recommend([["B0003"], ["B0010"]], k=4)
  assert (skipped == plain).all()
  np.testing.assert_allclose(s2, s3, rtol=1e-6)
  # Scores of given candidates equal the top-k scores of the same items.
  cand = rec.score(["B0003", "B0007"], candidates=list(items[0]))
  np.testing.assert_allclose(cand, scores[0], rtol=1e-5, atol=1e-6)


def test_k_beyond_the_unseen_items(rec):
  # 30 items, a history of 28: only 2 can be recommended.
  hist = [f"B{i:04d}" for i in range(1, 29)]
  items, scores = rec.recommend([hist], k=5)
  assert set(items[0, :2]) == {"B0029", "B0030"}
  assert (items[0, 2:] == "").all() and np.isneginf(scores[0, 2:]).all()


def _cli(args):
  return subprocess.run(
      [sys.executable, "-m", "diff4rec_jax.recommend", *args],
      capture_output=True, text=True, env=subprocess_env(), cwd=REPO,
      check=False, timeout=300)


def test_cli_tsv_and_unknown_item_message(run, rec, tmp_path):
  out = tmp_path / "recs.tsv"
  p = _cli([f"--workdir={run['wd']}", "--k=3", "--users=2,5",
            f"--out={out}"])
  assert p.returncode == 0, p.stderr[-3000:]
  rows = out.read_text().splitlines()
  assert rows[0] == "user\trank\titem\tscore"
  got = [r.split("\t") for r in rows[1:]]
  _, items, scores = rec.recommend_users([2, 5], k=3)
  assert [g[:3] for g in got] == [[str(u), str(k + 1), items[j, k]]
                                  for j, u in enumerate((2, 5))
                                  for k in range(3)]
  np.testing.assert_allclose([float(g[3]) for g in got], scores.ravel(),
                             atol=2e-6)
  hist = tmp_path / "new.txt"
  hist.write_text("a B0003\na B0007\nb B0001 B0042 B0002\n")
  p = _cli([f"--workdir={run['wd']}", f"--histories={hist}", "--k=2"])
  assert p.returncode != 0
  assert f"{hist}:3: item B0042 is not an item of this model" in p.stderr
  assert "--unknown_items=skip" in p.stderr
  assert "Traceback" not in p.stderr
  # The export command, then the same recommendations from its folder.
  exp = tmp_path / "exp"
  p = subprocess.run(
      [sys.executable, "-m", "diff4rec_jax.export", f"--workdir={run['wd']}",
       f"--out={exp}"], capture_output=True, text=True, env=subprocess_env(),
      cwd=REPO, check=False, timeout=300)
  assert p.returncode == 0, p.stderr[-3000:]
  from diff4rec_jax import recommend  # pylint: disable=g-import-not-at-top
  np.testing.assert_array_equal(
      recommend.load(str(exp)).recommend_users([2, 5], k=3)[1], items)


def test_read_histories_groups_users_in_file_order(tmp_path):
  from diff4rec_jax import recommend  # pylint: disable=g-import-not-at-top
  f = tmp_path / "h.txt"
  f.write_text("z 5\nb 1 2\nz 6\n\nb 3\n")
  users, hist, where = recommend.read_histories(str(f))
  assert list(users) == ["z", "b"]
  assert [list(h) for h in hist] == [["5", "6"], ["1", "2", "3"]]
  assert where(1) == f"{f}:3" and where(4) == f"{f}:5"


# -- export ----------------------------------------------------------------
def test_export_loads_without_data_and_refuses_changed_files(run, rec,
                                                              tmp_path):
  from diff4rec_jax import export  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import recommend  # pylint: disable=g-import-not-at-top
  exp = tmp_path / "export"
  manifest = export.export_run(rec, str(exp))
  assert sorted(manifest["files"]) == ["config.json", "histories.npz",
                                       "item_map.tsv", "params.npz"]
  assert manifest["versions"]["jax"] and manifest["num_items"] == NUM_ITEMS
  with pytest.raises(export.ExportError, match="already exists"):
    export.export_run(rec, str(exp))
  users, items, scores = rec.recommend_users(k=5)
  hidden = tmp_path / "moved"
  shutil.move(str(run["data_dir"]), str(hidden))     # no training data
  try:
    r2 = recommend.load(str(exp))
    u2, i2, s2 = r2.recommend_users(k=5)
    with pytest.raises(recommend.RecommendError, match="cannot be read"):
      recommend.load(run["wd"])
  finally:
    shutil.move(str(hidden), str(run["data_dir"]))
  assert (u2 == users).all() and (i2 == items).all()
  np.testing.assert_array_equal(s2, scores)
  # Without the users' histories: new histories only.
  bare = export.export_run(rec, str(tmp_path / "bare"), histories=False)
  assert "histories.npz" not in bare["files"]
  r3 = recommend.load(str(tmp_path / "bare"))
  with pytest.raises(recommend.RecommendError, match="no user histories"):
    r3.recommend_users(k=2)
  np.testing.assert_array_equal(r3.recommend([["B0001"]], k=3)[0],
                                rec.recommend([["B0001"]], k=3)[0])
  # One changed byte: refused, naming the file.
  p = exp / "params.npz"
  raw = bytearray(p.read_bytes())
  raw[-1] ^= 1
  p.write_bytes(bytes(raw))
  with pytest.raises(export.ExportError,
                     match=r"params.npz: sha256 .* does not match"):
    recommend.load(str(exp))
  (exp / "item_map.tsv").unlink()
  with pytest.raises(export.ExportError, match="item_map.tsv: missing"):
    export.verify(str(exp))


def test_load_refuses_a_changed_data_file_of_the_same_size(run):
  """Two of a user's items swapped: same users, items and actions, other
  interactions. The workdir's data fingerprint refuses it (item ids could
  mean other items), naming the way out; the original file loads again."""
  from diff4rec_jax import recommend  # pylint: disable=g-import-not-at-top
  path = run["data_dir"] / "toys.txt"
  original = path.read_text()
  first, rest = original.split("\n", 1)
  user, a, b, *more = first.split()
  path.write_text(" ".join([user, b, a, *more]) + "\n" + rest)
  try:
    with pytest.raises(recommend.RecommendError,
                       match=r"made on other data.*--data_dir"):
      recommend.load(run["wd"])
  finally:
    path.write_text(original)
  assert recommend.load(run["wd"]).num_items == NUM_ITEMS


def test_load_reads_a_run_without_changing_it(run, tmp_path):
  """Serving reads the run's saves read-only: with its newest best save
  damaged, a copy of the run is served from the previous best save, or
  refused when there is none, and nothing in it is created or deleted."""
  import glob  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import recommend  # pylint: disable=g-import-not-at-top
  wd = tmp_path / "run"
  shutil.copytree(run["wd"], wd)
  best = os.path.join(wd, "ckpt", "recommender", "best")
  steps = sorted(int(s) for s in os.listdir(best) if s.isdigit())
  files = glob.glob(os.path.join(best, str(steps[-1]), "**", "d", "*"),
                    recursive=True)
  biggest = max(files, key=os.path.getsize)
  open(biggest, "r+b").truncate(os.path.getsize(biggest) // 2)
  before = sorted((p, os.path.getsize(p)) for p in glob.glob(
      os.path.join(wd, "**"), recursive=True))
  if len(steps) > 1:
    assert recommend.load(str(wd)).meta["best_epoch"] is not None
  else:
    with pytest.raises(recommend.RecommendError, match="no best checkpoint"):
      recommend.load(str(wd))
  assert sorted((p, os.path.getsize(p)) for p in glob.glob(
      os.path.join(wd, "**"), recursive=True)) == before


def test_generator_progress_lines(tmp_path, monkeypatch):
  """The generator's epochs show step lines too, the recommender's (one
  training loop, loop.py; PROGRESS_SECONDS = 0: after every step)."""
  from configs import base  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import generator  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import runlog  # pylint: disable=g-import-not-at-top
  c = base.get_config()
  g = c.generator
  g.latent_size, g.encoder_hidden, g.denoiser_hidden = 8, (16,), (16,)
  g.batch_size, g.top_m, g.epochs, g.bag_chunk = 16, 10, 1, 32
  g.eval_at_end = False
  c.augment.top_m = 10
  _write_toys(tmp_path)
  ds = data_lib.read_interactions(str(tmp_path / "toys.txt"), "toys")
  monkeypatch.setattr(runlog, "PROGRESS_SECONDS", 0.0)
  handler = _Lines()
  root = logging.getLogger()
  old = [root.level, logging.getLogger("absl").level]
  root.addHandler(handler)
  root.setLevel(logging.INFO)
  logging.getLogger("absl").setLevel(logging.INFO)
  try:
    generator.run_generator_phase(c, ds, str(tmp_path / "gen"))
  finally:
    root.removeHandler(handler)
    root.setLevel(old[0])
    logging.getLogger("absl").setLevel(old[1])
  steps = [l for l in handler.lines if l.startswith("generator epoch 1  ")]
  assert [l for l in handler.lines if l.startswith("generator epoch 1/1")]
  total = int(steps[0].split()[3].split("/")[1])
  assert total >= -(-NUM_USERS // 16)          # at most 16 users a step
  assert [l.split("  ")[1] for l in steps] == [f"{k}/{total} steps"
                                               for k in range(1, total + 1)]
  assert "first step, compilation included" in steps[0]
  assert "eta" not in steps[0]            # compilation would skew it
  assert all("eta epoch" in l for l in steps[1:])


def test_load_fetches_a_missing_dataset_before_reading(tmp_path, monkeypatch):
  # recommend.load reads a run's data as training did: the fetch-if-missing
  # step first (data.load itself never downloads); either error is one
  # RecommendError naming the workdir.
  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import data as data_lib
  from diff4rec_jax import recommend
  from diff4rec_jax.datasets import prepare
  # pylint: enable=g-import-not-at-top
  (tmp_path / "config.json").write_text(json.dumps({"data": {
      "name": "ml-1m", "dir": str(tmp_path / "data"), "path": "",
      "download": True}}))
  calls = []

  def load(c):
    calls.append(("load", c.name))
    raise data_lib.DataError("load failed")

  monkeypatch.setattr(prepare, "ensure_for_config",
                      lambda c: calls.append(("ensure", c.name)))
  monkeypatch.setattr(data_lib, "load", load)
  with pytest.raises(recommend.RecommendError, match="load failed"):
    recommend.load(str(tmp_path))
  assert calls == [("ensure", "ml-1m"), ("load", "ml-1m")]

  def offline(c):
    raise data_lib.DataError(f"{c.name}: cannot connect")

  monkeypatch.setattr(prepare, "ensure_for_config", offline)
  with pytest.raises(recommend.RecommendError) as e:
    recommend.load(str(tmp_path))
  assert str(tmp_path) in str(e.value) and "cannot connect" in str(e.value)
  assert calls == [("ensure", "ml-1m"), ("load", "ml-1m")]


def test_serving_does_not_import_the_training_modules():
  """Loading an export needs only the model and ranking code: the serving
  modules leave train, loop, generator and pool unimported."""
  code = ("import sys; import diff4rec_jax.recommend, diff4rec_jax.export; "
          "print(sorted(m for m in ('diff4rec_jax.train', 'diff4rec_jax.loop',"
          " 'diff4rec_jax.generator', 'diff4rec_jax.pool') "
          "if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True,
                       capture_output=True, text=True).stdout
  assert out.strip() == "[]"


def test_load_refuses_a_run_restored_from_the_archive(run, tmp_path):
  """A run put back by benchmarks/archive.py has results but no
  checkpoints: serving it says so and how to get a model, not 'no best
  checkpoint yet'."""
  from benchmarks import archive  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import recommend  # pylint: disable=g-import-not-at-top
  runs = tmp_path / "runs"
  runs.mkdir()
  os.symlink(run["wd"], runs / "toys-sasrec-base-s0")
  shutil.copytree(run["wd"], runs / "copy-sasrec-base-s0")
  archive.save(str(runs), str(tmp_path / "archive"))
  new = tmp_path / "new"
  archive.restore(str(tmp_path / "archive"), str(new))
  with pytest.raises(recommend.RecommendError,
                     match=r"without its checkpoints.*run its command again"):
    recommend.load(str(new / "copy-sasrec-base-s0"))
