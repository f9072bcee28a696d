"""End-to-end training on ML-100K: compile-once steps, results files,
metrics against numpy, and exact resume."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diff4rec_jax import checkpointing
from diff4rec_jax import config_lib
from diff4rec_jax import data as data_lib
from diff4rec_jax import metrics
from diff4rec_jax import models
from diff4rec_jax import sharding
from diff4rec_jax import input_pipeline
from diff4rec_jax import pool as pool_lib
from diff4rec_jax import recommender
from diff4rec_jax import runlog
from diff4rec_jax import steps
from diff4rec_jax import train
from diff4rec_jax.datasets import prepare

from conftest import REPO


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_train_step_compiles_once_per_width(tiny_config, loss):
  c = tiny_config
  c.train.loss = loss
  c.train.length_buckets = (32,)
  ds = data_lib.load(c.data)
  mesh = sharding.make_mesh()
  model = models.get_model(c.model, ds.num_items, c.data.max_len)
  tx = steps.make_optimizer(c.train)
  state = sharding.replicate(steps.init_state(model, tx, jax.random.key(0),
                                              c.data.max_len), mesh)
  step = steps.make_train_step(model, tx, loss, ds.num_items)
  inputs, targets = ds.train_arrays(c.data.max_len)
  rows = np.flatnonzero((targets > 0).any(axis=1))
  widths = input_pipeline.bucket_widths(c)
  seen, losses_ = set(), []
  for epoch in (1,):
    for b in input_pipeline.train_batches(inputs, targets, rows,
                                          c.train.batch_size, c.seed, epoch,
                                          widths):
      assert b["inputs"].shape[0] == c.train.batch_size
      seen.add(b["inputs"].shape[1])
      state, m = step(state, sharding.shard_batch(b, mesh), jax.random.key(1))
      losses_.append(m["loss"])
  assert seen == {32, c.data.max_len}
  # ~15 steps, a padded last batch per width, two widths: two compiles.
  assert step._cache_size() == len(seen)  # pylint: disable=protected-access
  assert np.isfinite(np.array(jax.device_get(losses_))).all()


def test_cosine_schedule_warms_up_then_decays_to_zero(tiny_config):
  """lr_schedule='cosine': 0 at step 0, the peak `lr` after the warmup
  epochs, half of it midway through the decay, 0 at num_epochs; Adam's
  first update then moves nothing, and the optimizer state has the same
  structure for any steps_per_epoch (restoring needs no epoch size)."""
  tc = tiny_config.train
  tc.lr, tc.num_epochs = 1e-2, 10
  tc.lr_schedule, tc.lr_warmup_epochs = "cosine", 2
  lr = steps.learning_rate(tc, steps_per_epoch=5)
  assert float(lr(0)) == 0.0
  np.testing.assert_allclose(float(lr(10)), 1e-2, rtol=1e-6)
  np.testing.assert_allclose(float(lr(10 + 20)), 5e-3, rtol=1e-5)
  assert float(lr(50)) == pytest.approx(0.0, abs=1e-9)
  assert float(lr(9)) < float(lr(10)) > float(lr(11))
  params = {"w": jnp.ones(3)}
  tx = steps.make_optimizer(tc, 5)
  upd, _ = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
  np.testing.assert_array_equal(upd["w"], 0.0)
  s1 = jax.tree.structure(steps.make_optimizer(tc, 1).init(params))
  assert s1 == jax.tree.structure(tx.init(params))
  tc.lr_warmup_epochs = 0
  lr = steps.learning_rate(tc, steps_per_epoch=5)
  np.testing.assert_allclose(float(lr(0)), 1e-2, rtol=1e-6)
  np.testing.assert_allclose(float(lr(25)), 5e-3, rtol=1e-5)
  tc.lr_schedule = "constant"
  assert steps.learning_rate(tc, 5) == 1e-2


def test_param_ema_is_the_debiased_average_of_the_updated_params(
    tiny_config):
  """train.ema_decay = d: the optimizer's updates are those of plain Adam,
  and eval_params is sum_k (1 - d) d^(t-k) p_k / (1 - d^t) over the
  parameters p_1..p_t after each of t updates (numpy recurrence); before
  any update, and with d = 0, it is the raw parameters."""
  tc = tiny_config.train
  tc.lr = 0.1
  d = 0.8
  plain = steps.make_optimizer(tc)
  tc.ema_decay = d
  tx = steps.make_optimizer(tc)
  params = {"w": jnp.arange(3.0), "b": jnp.ones((2, 2))}
  state = {"params": params, "opt_state": tx.init(params)}
  np.testing.assert_array_equal(steps.eval_params(state, d)["w"],
                                params["w"])
  p_plain, s_plain = params, plain.init(params)
  history, rng = [], np.random.default_rng(0)
  for _ in range(4):
    g = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape),
                                           jnp.float32), params)
    upd, opt = tx.update(g, state["opt_state"], state["params"])
    upd_plain, s_plain = plain.update(g, s_plain, p_plain)
    jax.tree.map(np.testing.assert_array_equal, upd, upd_plain)
    p_plain = optax.apply_updates(p_plain, upd_plain)
    state = {"params": optax.apply_updates(state["params"], upd), "opt_state": opt}
    history.append(jax.tree.map(np.asarray, state["params"]))
  t = len(history)
  for k in ("w", "b"):
    want = sum((1 - d) * d ** (t - 1 - i) * h[k]
               for i, h in enumerate(history)) / (1 - d ** t)
    np.testing.assert_allclose(steps.eval_params(state, d)[k], want,
                               rtol=1e-6)
    assert not np.allclose(want, history[-1][k])   # it is not the last one
  assert steps.eval_params(state, 0.0) is state["params"]


def test_ema_run_evaluates_and_keeps_the_average(tiny_config, tmp_path):
  """A tiny run with train.ema_decay: its results are the metrics of the
  best checkpoint's parameter average (restore_best_params), which differs
  from that checkpoint's raw parameters."""
  c = tiny_config
  c.train.num_epochs, c.train.eval_every = 2, 1
  c.train.ema_decay = 0.9
  wd = str(tmp_path / "ema")
  res = train.train_and_evaluate(c, wd)
  ds = data_lib.load(c.data)
  avg, meta = recommender.restore_best_params(c, ds, wd)
  raw_c = c.copy_and_resolve_references()
  raw_c.train.ema_decay = 0.0   # read the same checkpoint's raw params
  with pytest.raises(Exception):
    recommender.restore_best_params(raw_c, ds, wd)   # other optimizer structure
  model = models.get_model(c.model, ds.num_items, c.data.max_len)
  mesh = sharding.make_mesh()
  step = steps.make_eval_step(model, ds.num_items, c.train.eval_item_chunk,
                              c.train.mask_history)
  widths = input_pipeline.bucket_widths(c)
  valid = train.evaluate(step, sharding.replicate(avg, mesh),
                         input_pipeline.EvalSet.build(ds, "valid",
                                                      c.data.max_len),
                         c.train.eval_batch_size, widths, mesh)
  assert meta["epoch"] == res["best_epoch"]
  for k, v in res["valid"].items():
    assert valid[k] == pytest.approx(v, abs=1e-6), k
  target = steps.init_state(model, steps.make_optimizer(c.train),
                            jax.random.key(0), c.data.max_len)
  ckpt = checkpointing.Checkpointer(os.path.join(wd, "ckpt", "recommender"))
  try:
    state, _ = ckpt.restore_best(target)
  finally:
    ckpt.close()
  diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                      avg, state["params"])
  assert max(jax.tree.leaves(diff)) > 1e-4


def test_eval_length_buckets_change_the_widths_not_the_metrics(tiny_config):
  """train.eval_length_buckets cuts evaluation batches to other widths (()
  falls back to train.length_buckets); the metrics stay the same."""
  c = tiny_config
  c.train.length_buckets = (32,)
  np.testing.assert_array_equal(input_pipeline.bucket_widths(c, "eval"),
                                [32, 50])
  c.train.eval_length_buckets = (24, 28, 36, 40, 44)
  np.testing.assert_array_equal(input_pipeline.bucket_widths(c), [32, 50])
  np.testing.assert_array_equal(input_pipeline.bucket_widths(c, "eval"),
                                [24, 28, 36, 40, 44, 50])
  ds = data_lib.load(c.data)
  model = models.get_model(c.model, ds.num_items, c.data.max_len)
  params = model.init(jax.random.key(0), jnp.zeros((1, 50), jnp.int32))
  mesh = sharding.make_mesh()
  step = steps.make_eval_step(model, ds.num_items, c.train.eval_item_chunk,
                              True)
  evalset = input_pipeline.EvalSet.build(ds, "test", c.data.max_len)
  got = {}
  for split in ("train", "eval"):
    widths = input_pipeline.bucket_widths(c, split)
    used = {b["inputs"].shape[1] for b in evalset.batches(32, widths)}
    assert len(used) >= 3 if split == "eval" else used == {32, 50}
    got[split] = train.evaluate(step, params["params"], evalset, 32, widths,
                                mesh)
  for k, v in got["train"].items():
    assert got["eval"][k] == pytest.approx(v, abs=1e-6), k
  assert got["train"]["HR@20"] > 0   # something to compare


def test_epoch_loss_norm_weighs_every_position_the_same(tiny_config):
  """loss_norm='epoch': a batch's loss is its sum over target positions
  divided by one constant (the epoch's mean count per batch), so a short
  bucket's batch and a long one's differ by their counts; 'batch' divides
  each by its own count."""
  c = tiny_config
  ds = data_lib.load(c.data)
  model = models.get_model(c.model, ds.num_items, c.data.max_len)
  tx = steps.make_optimizer(c.train)
  params = steps.init_state(model, tx, jax.random.key(0), c.data.max_len)
  inputs, targets = ds.train_arrays(c.data.max_len)
  rows = np.flatnonzero((targets > 0).any(axis=1))
  widths = np.array([32, c.data.max_len])
  n_steps = input_pipeline.num_train_steps(inputs, rows, 64, widths)
  norm = steps.loss_token_norm(targets, rows, n_steps)
  batches = list(input_pipeline.train_batches(inputs, targets, rows, 64, 0,
                                              1, widths))
  assert len(batches) == n_steps
  counts = [float((b["targets"] > 0).sum()) for b in batches]
  assert norm == pytest.approx(np.mean(counts))
  short = next(b for b in batches if b["inputs"].shape[1] == 32)
  n = float((short["targets"] > 0).sum())
  assert n < 0.7 * norm   # a short batch holds fewer positions (1470 vs 2584)
  per_batch = steps.make_train_step(model, tx, "ce", ds.num_items)
  per_epoch = steps.make_train_step(model, tx, "ce", ds.num_items,
                                    token_norm=norm)
  copy = lambda: jax.tree.map(jnp.array, params)
  _, m_batch = per_batch(copy(), short, jax.random.key(3))
  _, m_epoch = per_epoch(copy(), short, jax.random.key(3))
  # Same draws, same loss sum: only the divisor differs.
  np.testing.assert_allclose(float(m_epoch["loss"]) * norm,
                             float(m_batch["loss"]) * n, rtol=1e-5)


def test_batches_cover_every_trainable_user_once(tiny_config):
  ds = data_lib.load(tiny_config.data)
  inputs, targets = ds.train_arrays(50)
  rows = np.flatnonzero((targets > 0).any(axis=1))
  got = []
  for b in input_pipeline.train_batches(inputs, targets, rows, 64, 0, 3,
                               np.array([8, 32, 50])):
    live = b["targets"].any(axis=1)
    got += [tuple(x[x > 0]) for x in b["targets"][live]]
  # Rows are cut to their bucket width, which always holds every target.
  want = [tuple(x[x > 0]) for x in targets[rows]]
  assert sorted(got) == sorted(want)


def test_results_files_and_numpy_metrics(straight_run):
  c, wd, res = straight_run
  for f in ("config.json", "metrics.jsonl", "results.json"):
    assert os.path.exists(os.path.join(wd, f)), f
  assert os.listdir(os.path.join(wd, "tb"))
  with open(os.path.join(wd, "results.json")) as f:
    saved = json.load(f)
  assert saved["test"] == res["test"] and saved["dataset"]["users"] == 943
  # The code that made it: this checkout's commit (CI and sessions run in
  # one) and the libraries' versions.
  head = subprocess.run(["git", "-C", os.path.dirname(__file__), "rev-parse",
                         "HEAD"], capture_output=True, text=True)
  code = saved["code"]
  assert code["commit"] == (head.stdout.strip() or None)
  assert code["jax"] == jax.__version__ and code["flax"]
  assert isinstance(code["dirty"], bool) == (code["commit"] is not None)
  assert saved["machine"]["cores"] == os.cpu_count()
  if os.path.exists("/proc/cpuinfo"):
    assert saved["machine"]["isa"] is not None
  lines = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl"))]
  assert [l["epoch"] for l in lines if "valid/NDCG@10" in l] == [2, 4]

  # Recompute test metrics of the best checkpoint with numpy.
  ds = data_lib.load(c.data)
  model = models.get_model(c.model, ds.num_items, c.data.max_len)
  tx = steps.make_optimizer(c.train)
  target = steps.init_state(model, tx, jax.random.key(0), c.data.max_len)
  ckpt = checkpointing.Checkpointer(os.path.join(wd, "ckpt", "recommender"))
  best, _ = ckpt.restore_best(target)
  params = best["params"]
  inputs, tg = ds.eval_arrays("test", c.data.max_len)
  hidden = np.asarray(model.apply({"params": params}, jnp.array(inputs)))
  table = np.asarray(models.item_table(params))
  scores = hidden[:, -1].astype(np.float64) @ table.T.astype(np.float64)
  indptr, items = ds.history_csr("test")
  hist = [items[indptr[u]:indptr[u + 1]] for u in range(ds.num_users)]
  ranks = metrics.numpy_ranks(scores, tg, hist)
  want = {f"HR@{k}": np.mean(ranks < k) for k in (5, 10, 20)}
  want.update({f"NDCG@{k}": np.mean(np.where(ranks < k,
                                             1 / np.log2(ranks + 2), 0))
               for k in (5, 10, 20)})
  want["MRR"] = np.mean(1 / (ranks + 1))
  for k, v in want.items():
    # float32 on device vs float64 here: at most one user may flip.
    assert abs(res["test"][k] - v) <= 1.01 / ds.num_users, (k, v)
  assert res["test"]["HR@10"] > 0.03     # well above random (10/1682)


def test_resume_gives_the_same_results(straight_run, tmp_path):
  c, wd, res = straight_run
  wd2 = str(tmp_path / "resumed")
  with pytest.raises(runlog.Interrupted):
    train.train_and_evaluate(c, wd2, stop_after_epochs=1)
  with pytest.raises(runlog.Interrupted):
    train.train_and_evaluate(c, wd2, stop_after_epochs=3)
  res2 = train.train_and_evaluate(c, wd2)
  assert res2["best_epoch"] == res["best_epoch"]
  assert res2["valid"] == res["valid"]
  assert res2["test"] == res["test"]
  strip = lambda p: [{k: v for k, v in json.loads(l).items()
                      if k not in runlog.TIMING_FIELDS} for l in open(p)]
  assert strip(os.path.join(wd2, "metrics.jsonl")) == strip(
      os.path.join(wd, "metrics.jsonl"))


def test_workdir_of_another_config_is_refused(straight_run):
  c, wd, _ = straight_run
  c2 = c.copy_and_resolve_references()
  c2.train.lr = c.train.lr * 2
  with pytest.raises(ValueError, match="different config.*train.lr"):
    train.train_and_evaluate(c2, wd)


def test_workdir_accepts_changed_speed_settings(straight_run, tmp_path):
  # model.attn_blocks / train.micro_batch change how the step runs, not the
  # model: a workdir saved with other values is not refused.
  from diff4rec_jax import config_lib  # pylint: disable=g-import-not-at-top
  c, wd, _ = straight_run
  saved = json.load(open(os.path.join(wd, "config.json")))
  wd2 = str(tmp_path / "speed")
  os.makedirs(wd2)
  saved["model"]["attn_blocks"] = c.model.attn_blocks + 3
  saved["train"]["micro_batch"] = c.train.micro_batch + 7
  with open(os.path.join(wd2, "config.json"), "w") as f:
    json.dump(saved, f)
  config_lib.check_workdir(c, wd2)
  saved["train"]["lr"] = c.train.lr * 2
  with open(os.path.join(wd2, "config.json"), "w") as f:
    json.dump(saved, f)
  with pytest.raises(ValueError, match="different config.*train.lr"):
    config_lib.check_workdir(c, wd2)


def test_a_base_workdir_ignores_the_augmentation_fields(straight_run,
                                                          tmp_path):
  from diff4rec_jax import config_lib  # pylint: disable=g-import-not-at-top
  c, wd, _ = straight_run
  saved = json.load(open(os.path.join(wd, "config.json")))
  saved["mode"] = "base"
  saved["augment"]["ratio"] = c.augment.ratio / 2
  saved["generator"]["epochs"] = c.generator.epochs + 1
  wd2 = str(tmp_path / "base")
  os.makedirs(wd2)
  with open(os.path.join(wd2, "config.json"), "w") as f:
    json.dump(saved, f)
  base = c.copy_and_resolve_references()
  base.mode = "base"
  config_lib.check_workdir(base, wd2)
  saved["mode"] = "aug"
  with open(os.path.join(wd2, "config.json"), "w") as f:
    json.dump(saved, f)
  aug = c.copy_and_resolve_references()
  aug.mode = "aug"
  with pytest.raises(ValueError, match="different config.*augment.ratio"):
    config_lib.check_workdir(aug, wd2)


@pytest.mark.parametrize("field, value", [
    ("data.max_len", 1), ("train.batch_size", -4), ("model.name", "bert"),
    ("train.loss", "hinge"), ("model.dropout", 1.5), ("mode", "magic"),
    ("train.eval_item_chunk", 100), ("model.dropout_rng", "fast"),
    ("train.loss_norm", "user"), ("model.attn_dropout", "none"),
    ("model.qkv_init", "xavier"), ("model.positions", "left"),
    ("train.lr_schedule", "step"), ("train.lr_warmup_epochs", -1),
    ("model.dtype", "float16"), ("train.ema_decay", 1.0),
    ("train.eval_length_buckets", (16, 0)), ("data.train_windows", -1),
])
def test_bad_config_values_name_the_field(tiny_config, field, value):
  c = tiny_config
  block, name = field.split(".") if "." in field else (None, field)
  if block:
    c[block][name] = value
  else:
    c[name] = value
  with pytest.raises(ValueError, match=f"config.{field}"):
    config_lib.validate(c)


def test_bfloat16_is_refused_for_backbones_without_it(tiny_config):
  c = tiny_config
  c.model.dtype = "bfloat16"
  config_lib.validate(c)                      # sasrec has it
  c.model.name = "gru4rec"
  with pytest.raises(ValueError, match="config.model.dtype.*sasrec"):
    config_lib.validate(c)


def test_cli_overrides_and_unknown_field(data_dir, tmp_path):
  env = dict(os.environ, DIFF4REC_DATA_DIR=data_dir, JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "diff4rec_jax.main",
         "--config=configs/tiny.py", f"--workdir={tmp_path}"]
  bad = subprocess.run(cmd + ["--config.train.no_such_field=1"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=120)
  assert bad.returncode != 0 and "no_such_field" in bad.stderr
  bad = subprocess.run(cmd + ["--config.train.batch_size=0"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=120)
  assert bad.returncode != 0
  assert "config.train.batch_size" in bad.stderr


def test_process_local_rows_make_up_the_global_batches(tiny_config):
  # Two processes each build half of every batch (sharding.local_slice);
  # side by side the halves are the global batches, in the same order.
  ds = data_lib.load(tiny_config.data)
  inputs, targets = ds.train_arrays(50)
  rows = np.flatnonzero((targets > 0).any(axis=1))
  widths = np.array([8, 32, 50])
  halves = (slice(0, 32), slice(32, 64))
  full = list(input_pipeline.train_batches(inputs, targets, rows, 64, 0, 2,
                                           widths))
  parts = [list(input_pipeline.train_batches(inputs, targets, rows, 64, 0, 2,
                                             widths, h)) for h in halves]
  assert len(parts[0]) == len(parts[1]) == len(full)
  for f, a, b in zip(full, *parts):
    assert a["inputs"].shape == (32, f["inputs"].shape[1])
    for k in f:
      np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), f[k])
  ev = input_pipeline.EvalSet.build(ds, "valid", 50)
  full = list(ev.batches(128, widths))
  parts = [list(ev.batches(128, widths, slice(0, 64))),
           list(ev.batches(128, widths, slice(64, 128)))]
  for f, a, b in zip(full, *parts):
    for k in f:
      np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), f[k])


def test_augment_pool_draw_local_halves_make_up_the_draw(tiny_config):
  rng = np.random.default_rng(0)
  copies = rng.integers(0, 50, (40, 12)).astype(np.int32)
  pool = pool_lib.AugmentPool(copies, np.arange(40)[::-1].astype(np.int32),
                           tiny_config.augment, "diff4rec", 3)
  full = pool.draw(5, 100, 16)
  a = pool.draw(5, 100, 16, slice(0, 8))
  b = pool.draw(5, 100, 16, slice(8, 16))
  assert full["aug_inputs"].shape == (16, 12)
  for k in full:
    np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), full[k])


def test_pacing_clock_is_pacing_epochs_or_num_epochs(tiny_config):
  c = tiny_config
  c.train.num_epochs = 200
  assert pool_lib.pacing_steps(c, 10) == 2000
  c.augment.pacing_epochs = 30
  assert pool_lib.pacing_steps(c, 10) == 300
  # Linear pacing (start 0.2, all admitted at 0.8 of the clock): with a
  # 30-epoch clock the whole pool is in by epoch 24, not epoch 160.
  pool = pool_lib.AugmentPool(np.zeros((100, 5), np.int32),
                           np.arange(100, dtype=np.int32), c.augment,
                           "diff4rec", 0)
  assert pool.admitted(0, 300) == 20
  assert pool.admitted(240, 300) == 100
  assert pool.admitted(240, 2000) < 40


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_sampled_softmax_run_learns(tiny_config, tmp_path, sampler):
  """train.loss='sampled_ce' (128 shared negatives) trains ML-100K to a
  ranking far above chance (NDCG@10 of a random order: ~0.003; full CE on
  this config: 0.046)."""
  c = tiny_config
  c.train.loss, c.train.negative_sampler = "sampled_ce", sampler
  c.train.num_negatives = 128
  res = train.train_and_evaluate(c, str(tmp_path))
  assert res["valid"]["NDCG@10"] > 0.03


def test_sampled_softmax_config_errors_name_the_field(tiny_config):
  c = tiny_config
  c.train.loss = "sampled_ce"
  c.train.negative_sampler = "zipf"
  with pytest.raises(ValueError, match="train.negative_sampler"):
    config_lib.validate(c)
  c.train.negative_sampler = "uniform"
  c.train.num_negatives = 0
  with pytest.raises(ValueError, match="train.num_negatives"):
    config_lib.validate(c)


def _pool_of_lengths(aug_cfg, mode="diff4rec", seed=3):
  """60 copies of width 12 with lengths 2..12 (so 1..11 training pairs);
  copy i starts with item 1000 + i (its id, read back from a drawn input)."""
  rng = np.random.default_rng(1)
  copies = np.zeros((60, 12), np.int32)
  for i in range(60):
    n = 2 + i % 11
    copies[i, 12 - n:] = rng.integers(1, 99, n)
    copies[i, 12 - n] = 1000 + i
  order = rng.permutation(60).astype(np.int32)
  return pool_lib.AugmentPool(copies, order, aug_cfg, mode, seed,
                           widths=np.array([4, 8, 12]))


def _drawn_ids(d):
  inp = d["aug_inputs"]
  return inp[np.arange(len(inp)), (inp > 0).argmax(1)] - 1000


def test_bucketed_draw_cuts_copies_and_keeps_each_copy_equally_likely(
    tiny_config):
  pool = _pool_of_lengths(tiny_config.augment)
  hits = np.zeros(60)
  widths = set()
  for step in range(3000):
    d = pool.draw(step, 1, 8)            # pacing over 1 step: all admitted
    w = d["aug_inputs"].shape[1]
    widths.add(w)
    ids = _drawn_ids(d)
    # Each row is its copy's pairs, cut to the width without losing any.
    inp, tgt = augment_pairs_batch(pool.copies[ids])
    np.testing.assert_array_equal(inp[:, :-w], 0)
    np.testing.assert_array_equal(d["aug_inputs"], inp[:, -w:])
    np.testing.assert_array_equal(d["aug_targets"], tgt[:, -w:])
    assert w == min(x for x in (4, 8, 12)
                    if x >= (pool.copies[ids] > 0).sum(1).max() - 1)
    np.add.at(hits, ids, 1)
  assert widths == {4, 8, 12}
  full = pool_lib.AugmentPool(pool.copies, pool.order, pool.augment_config,
                           "diff4rec", 3)
  assert full.draw(0, 1, 8)["aug_inputs"].shape == (8, 12)
  rel = hits / hits.mean()
  assert rel.min() > 0.8 and rel.max() < 1.2, rel


def test_pop_schedule_takes_every_copy_once_in_curriculum_order(tiny_config):
  a = tiny_config.augment
  a.schedule = "pop"
  pool = _pool_of_lengths(a)
  pass_steps = pool.pass_steps(8)
  seen, firsts = [], []
  for step in range(len(pass_steps)):
    d = pool.draw(step, 10**6, 8)
    w = d["aug_inputs"].shape[1]
    s, j = pass_steps[step]
    positions = pool._strata()[1][s]  # pylint: disable=protected-access
    taken = positions[j: j + 8]
    firsts.append(taken[0])
    seen.extend(taken)
    want = augment_pairs_batch(pool.copies[pool.order[taken]])[1][:, -w:]
    np.testing.assert_array_equal(d["aug_targets"][:len(taken)], want)
  assert sorted(seen) == list(range(60))           # each copy once
  assert firsts == sorted(firsts)                  # easy to hard
  # After the pass: uniform over the whole pool, whatever the pacing says.
  assert pool.draw(len(pass_steps), 10**6, 8)["aug_inputs"].shape[0] == 8


def augment_pairs_batch(copies):
  from diff4rec_jax import augment  # pylint: disable=g-import-not-at-top
  return augment.shift_pairs(copies)


@pytest.mark.parametrize("norm", ["mean", "sum"])
def test_augmented_loss_norm(tiny_config, norm):
  c = tiny_config
  ds = data_lib.load(c.data)
  model = models.get_model(c.model, ds.num_items, c.data.max_len)
  tx = steps.make_optimizer(c.train)
  state = steps.init_state(model, tx, jax.random.key(0), c.data.max_len)
  inputs, targets = ds.train_arrays(c.data.max_len)
  batch = {"inputs": inputs[:8], "targets": targets[:8],
           "aug_inputs": inputs[8:40], "aug_targets": targets[8:40]}
  out = {}
  for n in ("mean", norm):
    step = steps.make_train_step(model, tx, "ce", ds.num_items, aug_norm=n)
    _, m = step(jax.tree.map(jnp.copy, state), batch, jax.random.key(1))
    out[n] = float(m["loss_aug"])
  ratio = (targets[8:40] > 0).sum() / (targets[:8] > 0).sum()
  want = out["mean"] * (ratio if norm == "sum" else 1.0)
  np.testing.assert_allclose(out[norm], want, rtol=1e-5)


def test_data_phase_fetches_a_missing_dataset_before_loading(
    tiny_config, tmp_path, monkeypatch):
  # data.load never downloads: the phase driver runs the fetch-if-missing
  # step (datasets.prepare.ensure_for_config) first, on the same config.data.
  calls = []

  class Stop(Exception):
    pass

  def load(data_config):
    calls.append(("load", data_config.name))
    raise Stop

  monkeypatch.setattr(prepare, "ensure_for_config",
                      lambda c: calls.append(("ensure", c.name)))
  monkeypatch.setattr(data_lib, "load", load)
  with pytest.raises(Stop):
    train.train_and_evaluate(tiny_config, str(tmp_path / "wd"))
  name = tiny_config.data.name
  assert calls == [("ensure", name), ("load", name)]
