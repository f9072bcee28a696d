"""Control candidate sources: popular and uniform unseen items."""

import numpy as np
import pytest

from diff4rec_jax import candidates


def _csr(rows):
  indptr = np.cumsum([0] + [len(r) for r in rows])
  return indptr, np.array([i for r in rows for i in r], np.int32)


def test_popular_is_the_most_frequent_unseen_items_by_count():
  # items 1..6; counts: 5:9, 2:7, 4:7, 1:3, 3:1, 6:0 (never in training)
  counts = np.array([0, 3, 7, 1, 7, 9, 0])
  indptr, items = _csr([[5], [2, 4, 1], []])
  it, pr = candidates.control_topm("popular", indptr, items, counts, 3)
  np.testing.assert_array_equal(it, [[2, 4, 1], [5, 3, 0], [5, 2, 4]])
  # p = count / mass of the user's unseen items (2+4+1+3: 7+7+3+1 = 18).
  np.testing.assert_allclose(pr[0], np.array([7, 7, 3]) / 18, rtol=1e-6)
  np.testing.assert_allclose(pr[1], [9 / 10, 1 / 10, 0], rtol=1e-6)
  np.testing.assert_allclose(pr[2], np.array([9, 7, 7]) / 27, rtol=1e-6)


def test_uniform_draws_distinct_unseen_items_with_equal_probs():
  rng = np.random.default_rng(0)
  n, u = 50, 3000
  counts = rng.integers(0, 5, n + 1)
  counts[0] = 0
  rows = [list(rng.choice(np.arange(1, n + 1), rng.integers(0, 20),
                          replace=False)) for _ in range(u)]
  indptr, items = _csr(rows)
  it, pr = candidates.control_topm("uniform", indptr, items, counts, 10,
                                   seed=1)
  hits = np.zeros(n + 1)
  for r, row in enumerate(rows):
    got = it[r][it[r] > 0]
    allowed = {i for i in range(1, n + 1) if counts[i] > 0} - set(row)
    assert len(got) == min(10, len(allowed)) == len(set(got))
    assert set(got) <= allowed
    np.testing.assert_allclose(pr[r][: len(got)], 1 / len(allowed),
                               rtol=1e-6)
    hits[got] += 1
  # Every allowed item is drawn about equally often (no id bias).
  ok = counts > 0
  rel = hits[ok] / hits[ok].mean()
  assert rel.min() > 0.8 and rel.max() < 1.2, rel
  again, _ = candidates.control_topm("uniform", indptr, items, counts, 10,
                                     seed=1)
  np.testing.assert_array_equal(it, again)


def test_unknown_kind_names_the_field():
  with pytest.raises(ValueError, match="augment.candidates"):
    candidates.control_topm("zipf", np.array([0]), np.zeros(0, np.int32),
                            np.ones(3), 2)


def _aug_run_without_generator(c, tmp_path, **augment):
  """A 1-epoch aug run of `c` with these augment fields (top-M 20): no
  generator phase. Returns (workdir, dataset, training-prefix CSR)."""
  from diff4rec_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import train  # pylint: disable=g-import-not-at-top
  c.mode = "aug"
  c.augment.update(top_m=20, warmup_epochs=1, **augment)
  c.generator.top_m = 20
  c.train.num_epochs = c.train.eval_every = 1
  wd = tmp_path / "run"
  res = train.train_and_evaluate(c, str(wd))
  assert np.isfinite(res["valid"]["NDCG@10"])
  assert not (wd / "generator").exists()
  ds = data_lib.load(c.data)
  return wd, ds, input_pipeline.train_rows(ds)


def _assert_new_items_among(wd, num_users, top):
  """Every item a copy brings in is among its user's row of `top`."""
  with np.load(wd / "augmented.npz") as z:
    copies, orig = z["copies"], z["orig"]
  for u in range(0, num_users, 97):
    new = set(copies[u].ravel()) - set(orig[u].ravel()) - {0}
    assert new and new <= set(top[u])


def test_control_candidates_run_without_a_generator(tiny_config, tmp_path):
  """mode 'aug' with augment.candidates='popular': no generator phase, and
  every item a copy brings in is among the user's popular unseen top-M."""
  from diff4rec_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  wd, ds, (indptr, hist) = _aug_run_without_generator(
      tiny_config, tmp_path, candidates="popular")
  _, pos = data_lib.row_ranges(ds.indptr[:-1], ds.split_end("train"))
  top, _ = candidates.control_topm(
      "popular", indptr, hist, candidates.item_counts(ds.items[pos],
                                                      ds.num_items), 20)
  _assert_new_items_among(wd, ds.num_users, top)


@pytest.mark.parametrize("field,bad", [("candidates", "zipf"),
                                       ("loss_norm", "max"),
                                       ("schedule", "once")])
def test_augment_switches_are_validated(tiny_config, field, bad):
  from diff4rec_jax import config_lib  # pylint: disable=g-import-not-at-top
  tiny_config.mode = "diff4rec"
  tiny_config.augment[field] = bad
  with pytest.raises(ValueError, match=f"augment.{field}"):
    config_lib.validate(tiny_config)


def test_popular_with_history_items_when_asked():
  counts = np.array([0, 3, 7, 1, 7, 9, 0])
  indptr, items = _csr([[5], [2, 4, 1]])
  it, pr = candidates.control_topm("popular", indptr, items, counts, 3,
                                   exclude_history=False)
  np.testing.assert_array_equal(it, [[5, 2, 4], [5, 2, 4]])
  np.testing.assert_allclose(pr[0], np.array([9, 7, 7]) / 27, rtol=1e-6)


def test_copy_source_prefix_samples_the_whole_training_prefix(tiny_config,
                                                              tmp_path):
  """ratio 0 + reorder: copies are shuffles. 'recent' shuffles the newest
  max_len items; 'prefix' shuffles the whole training prefix, then keeps
  max_len of it, so long users' copies bring back older items."""
  from diff4rec_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import pool as pool_lib  # pylint: disable=g-import-not-at-top
  c = tiny_config
  c.mode = "aug"
  c.data.max_len = 20
  c.augment.update(candidates="uniform", ratio=0.0, num_copies=3)
  ds = data_lib.load(c.data)
  start, end = ds.indptr[:-1], ds.split_end("train")
  older = 0
  for source in ("recent", "prefix"):
    c.augment.copy_source = source
    cand, prob = pool_lib.control_candidates(c, ds)
    emb = np.random.default_rng(0).normal(size=(ds.num_items + 1, 8))
    pool = pool_lib.build_pool(c, ds, str(tmp_path / source), cand, prob,
                               emb)
    copies = pool.copies.reshape(ds.num_users, 3, 20)
    for u in range(0, ds.num_users, 37):
      prefix = ds.items[start[u]:end[u]]
      recent = set(prefix[-20:].tolist())
      for copy in copies[u]:
        got = copy[copy > 0]
        assert len(got) == min(len(prefix), 20)
        assert set(got.tolist()) <= set(prefix.tolist())
        if source == "recent":
          assert set(got.tolist()) == recent
        else:
          older += len(set(got.tolist()) - recent)
  assert older > 0


def test_min_replaced_gives_every_copy_a_new_item(tiny_config, tmp_path):
  """ratio 0.1 leaves the copies of sequences under 5 items unchanged (as
  multisets); augment.min_replaced=1 makes every copy bring in a new item.
  The pool's hash keys on it, so a pool built without it is not reused."""
  from diff4rec_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import pool as pool_lib  # pylint: disable=g-import-not-at-top
  c = tiny_config
  c.mode = "aug"
  c.data.max_len = 4        # copies of 4 items: round_half_up(0.4) = 0
  c.augment.update(candidates="uniform", ratio=0.1, num_copies=3)
  ds = data_lib.load(c.data)
  emb = np.random.default_rng(0).normal(size=(ds.num_items + 1, 8))
  unchanged, hashes = {}, {}
  for m in (0, 1):
    c.augment.min_replaced = m
    cand, prob = pool_lib.control_candidates(c, ds)
    wd = str(tmp_path / f"min{m}")
    pool = pool_lib.build_pool(c, ds, wd, cand, prob, emb)
    hashes[m] = pool_lib.config_hash(c, ds)
    with np.load(f"{wd}/augmented.npz") as z:
      copies, orig = z["copies"], z["orig"]
    assert pool.copies.shape[0] == ds.num_users * 3
    same = [sorted(copies[u, r][copies[u, r] > 0]) ==
            sorted(orig[u][orig[u] > 0])
            for u in range(ds.num_users) for r in range(3)
            if (orig[u] > 0).any()]
    unchanged[m] = np.mean(same)
  assert unchanged[0] == 1.0 and unchanged[1] == 0.0, unchanged
  assert hashes[0] != hashes[1]
  assert pool_lib.load_cached(c, ds, str(tmp_path / "min0")) is None
  assert pool_lib.load_cached(c, ds, str(tmp_path / "min1")) is not None


def test_softmax_topm_over_each_rows_finite_scores():
  inf = np.inf
  s = np.array([[3.0, 1.0, -inf], [-inf, -inf, -inf], [1000.0, 999.0, 998.0]])
  p = candidates.softmax_topm(s)
  want0 = np.exp([3.0, 1.0]) / np.exp([3.0, 1.0]).sum()
  np.testing.assert_allclose(p[0], [want0[0], want0[1], 0.0], rtol=1e-6)
  np.testing.assert_array_equal(p[1], 0.0)
  e = np.exp([0.0, -1.0, -2.0])
  np.testing.assert_allclose(p[2], e / e.sum(), rtol=1e-6)  # no overflow
  assert p.dtype == np.float32


def _teacher_reference(teacher, ds, users, k, exclude_history):
  """Top-k items and scores by numpy from the teacher's state after each
  user's validation input row (its training prefix as its validation saw
  it), the prefix's items masked if `exclude_history`."""
  from diff4rec_jax import models  # pylint: disable=g-import-not-at-top
  inputs, _ = ds.eval_arrays("valid", teacher.max_len)
  hidden = np.asarray(teacher.model.apply(
      {"params": teacher.params}, inputs[users], train=False))[:, -1]
  scores = hidden @ np.asarray(models.item_table(teacher.params)).T
  scores[:, 0] = -np.inf
  if exclude_history:
    end = ds.split_end("valid")
    for j, u in enumerate(users):
      scores[j, ds.items[ds.indptr[u]:end[u]]] = -np.inf
  top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  return top, np.take_along_axis(scores, top, 1)


def test_teacher_candidates_are_another_runs_top_m(straight_run, tmp_path):
  """augment.candidates='teacher': no generator phase; the candidates are
  the finished teacher run's top-M after each user's training prefix (a
  numpy reference from its validation input rows), with or without the
  prefix's items; every item a copy brings in is among them."""
  from diff4rec_jax import recommender  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import train  # pylint: disable=g-import-not-at-top
  base_config, teacher_wd, _ = straight_run
  c = base_config.copy_and_resolve_references()
  wd, ds, _ = _aug_run_without_generator(
      c, tmp_path, candidates="teacher", teacher_workdir=teacher_wd)
  teacher = recommender.from_workdir(teacher_wd)
  users = np.arange(0, ds.num_users, 97)
  for exclude in (True, False):
    c.augment.exclude_history = exclude
    cand, prob = train.teacher_candidates(c, ds)
    top, scores = _teacher_reference(teacher, ds, users, 20, exclude)
    np.testing.assert_array_equal(cand[users], top)
    np.testing.assert_allclose(prob[users], candidates.softmax_topm(scores),
                               rtol=1e-4, atol=1e-6)
    if exclude:
      _assert_new_items_among(wd, ds.num_users, cand)
  # Without the mask the teacher may name the user's own items.
  assert any(set(cand[u]) & set(ds.items[ds.indptr[u]:ds.indptr[u + 1]])
             for u in users)


def test_teacher_must_be_finished_on_the_same_data(straight_run, tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import config_lib  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import errors  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import rundir  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import train  # pylint: disable=g-import-not-at-top
  base_config, teacher_wd, _ = straight_run
  c = base_config.copy_and_resolve_references()
  c.mode = "aug"
  c.augment.candidates = "teacher"
  with pytest.raises(ValueError, match="augment.teacher_workdir"):
    config_lib.validate(c)
  ds = data_lib.load(c.data)
  unfinished = tmp_path / "unfinished"
  unfinished.mkdir()
  (unfinished / "config.json").write_text("{}")
  c.augment.teacher_workdir = str(unfinished)
  with pytest.raises(errors.UserError, match="not a finished run's workdir"):
    train.teacher_candidates(c, ds)
  other = tmp_path / "other"
  shutil.copytree(teacher_wd, other)
  fp = other / rundir.FINGERPRINT_FILE
  saved = json.loads(fp.read_text())
  saved["split"] = "0" * 64
  fp.write_text(json.dumps(saved))
  c.augment.teacher_workdir = str(other)
  with pytest.raises(rundir.DataMismatch, match="made on other data"):
    train.teacher_candidates(c, ds)
  # A teacher from before fingerprints: checked by its results' counts.
  fp.unlink()
  cand, _ = train.teacher_candidates(c, ds)
  assert cand.shape == (ds.num_users, c.augment.top_m)
  res = json.loads((other / "results.json").read_text())
  res["dataset"]["actions"] += 1
  (other / "results.json").write_text(json.dumps(res))
  with pytest.raises(rundir.DataMismatch, match="made on other data"):
    train.teacher_candidates(c, ds)
