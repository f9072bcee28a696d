"""Training and evaluation: `train_and_evaluate(config, workdir)`.

`train_and_evaluate` runs the phases in order, each resumable and cached:

  data -> [generator (or a control's candidates) -> warm-up recommender ->
  augmentation pool]  (modes 'aug', 'diff4rec') -> recommender -> test

and writes the run's files:

  workdir/config.json     the resolved config (a rerun must match it)
  workdir/metrics.jsonl   one JSON object per epoch / evaluation
  workdir/results.json    final: config, data statistics, best epoch,
                          validation and test metrics, wall time,
                          devices, code and machine
                          (runlog.code_version, runlog.machine_info)
  workdir/tb/             TensorBoard event files (tensorboardX)
  workdir/ckpt/...        Orbax checkpoints (see checkpointing.py)

This module owns the phase drivers and what the recommender supplies to
the training loop (loop.py: resume, cadence, evaluation, early stopping,
checkpoints, preemption): its batches, step, evaluation and curriculum
re-scoring. The jitted steps are in steps.py, the host batches in
input_pipeline.py, the pool in pool.py, the run files in runlog.py.
Rerunning the same command with the same workdir resumes from the latest
checkpoint and ends with the same results as an uninterrupted run:
shuffling is a function of (seed, epoch), dropout and negative sampling of
(seed, step).
"""

from __future__ import annotations

import itertools
import json
import os
import time

from typing import Optional

from absl import logging
import jax
import ml_collections
import numpy as np

from diff4rec_jax import candidates as candidates_lib
from diff4rec_jax import checkpointing
from diff4rec_jax import config_lib
from diff4rec_jax import data as data_lib
from diff4rec_jax import errors
from diff4rec_jax import generator
from diff4rec_jax import input_pipeline
from diff4rec_jax import loop
from diff4rec_jax import metrics as metrics_lib
from diff4rec_jax import models
from diff4rec_jax import pool as pool_lib
from diff4rec_jax import recommender
from diff4rec_jax import rundir
from diff4rec_jax import runlog
from diff4rec_jax import sharding
from diff4rec_jax import steps
from diff4rec_jax.datasets import prepare


# ----------------------------------------------------------------------------
# The recommender phase
# ----------------------------------------------------------------------------
def evaluate(eval_step, params, evalset: input_pipeline.EvalSet,
             batch_size: int,
             widths: np.ndarray, mesh) -> dict:
  """Full-ranking metrics of `params` on one split (all users).

  A progress line every runlog.PROGRESS_SECONDS (the sums fetched only
  there)."""
  sums = sharding.replicate(steps.zero_sums(), mesh)
  local = sharding.local_slice(batch_size, mesh)
  n = -(-len(evalset.targets) // batch_size)
  t0 = last = time.time()
  for i, batch in enumerate(evalset.batches(batch_size, widths, local)):
    sums = eval_step(params, sums, sharding.shard_local_batch(batch, mesh))
    if time.time() - last >= runlog.PROGRESS_SECONDS and i + 1 < n:
      jax.block_until_ready(sums)
      last = time.time()
      logging.info("evaluation  %d/%d batches  eta %s", i + 1, n,
                   runlog.fmt_secs((last - t0) * (n - i - 1) / (i + 1)))
  return metrics_lib.finalize(sums)


is_chief = sharding.is_chief


def train_recommender(config: ml_collections.ConfigDict,
                      ds: data_lib.SequenceData, workdir: str,
                      stop_after_epochs: Optional[int] = None,
                      pool: Optional["pool_lib.AugmentPool"] = None) -> dict:
  """Trains the sequential recommender; returns the results dict.

  Args:
    config: the run config.
    ds: the dataset.
    workdir: run folder (checkpoints under workdir/ckpt/recommender).
    pool: augmented copies (modes 'aug' and 'diff4rec'): each step adds a
      fixed number of copies drawn from the admitted part of the pool.
    stop_after_epochs: end this process after that many epochs have been
      completed in total (a checkpoint is saved first), raising
      `runlog.Interrupted`: a stand-in for a killed run in tests.
  """
  t0 = time.time()
  tc, mc = config.train, config.model
  max_len = config.data.max_len
  mesh = sharding.make_mesh()
  sharding.check_batch(tc.batch_size, mesh, "config.train.batch_size")
  sharding.check_batch(tc.eval_batch_size, mesh, "config.train.eval_batch_size")

  model = models.get_model(mc, ds.num_items, max_len)
  train_in, train_tg = ds.train_arrays(max_len,
                                       config.data.get("train_windows", 1))
  rows = np.flatnonzero((train_tg > 0).any(axis=1))
  if len(train_in) > ds.num_users:
    logging.info("training rows: %d users + %d earlier windows of long "
                 "prefixes (data.train_windows=%d)", ds.num_users,
                 len(train_in) - ds.num_users, config.data.train_windows)
  valid_set = input_pipeline.EvalSet.build(ds, "valid", max_len)
  widths = input_pipeline.bucket_widths(config)
  eval_widths = input_pipeline.bucket_widths(config, "eval")
  steps_per_epoch = input_pipeline.num_train_steps(train_in, rows,
                                                   tc.batch_size, widths)
  tx = steps.make_optimizer(tc, steps_per_epoch)
  ema = tc.get("ema_decay", 0.0)
  key = jax.random.key(config.seed, impl=config.rng_impl)
  init_key, step_key = jax.random.split(key)
  state = sharding.replicate(steps.init_state(model, tx, init_key, max_len),
                             mesh)
  ndev = mesh.devices.size
  micro = steps.micro_batcher(tc.micro_batch, tc.batch_size, ndev)
  eval_micro = steps.micro_batcher(tc.micro_batch, tc.eval_batch_size, ndev)
  token_norm = (steps.loss_token_norm(train_tg, rows, steps_per_epoch)
                if tc.loss_norm == "epoch" else 0.0)
  train_step = steps.make_train_step(
      model, tx, tc.loss, ds.num_items, config.augment.loss_weight, micro,
      token_norm, sampled=steps.sampled_softmax(tc, train_tg, ds.num_items),
      aug_norm=config.augment.loss_norm)
  eval_step = steps.make_eval_step(model, ds.num_items, tc.eval_item_chunk,
                                   tc.mask_history, eval_micro)
  # Each process builds only its own rows of every batch.
  local = sharding.local_slice(tc.batch_size, mesh)
  if pool is not None:
    num_aug = pool_lib.aug_batch_size(config, mesh)
    aug_local = sharding.local_slice(num_aug, mesh)
    pace_steps = pool_lib.pacing_steps(config, steps_per_epoch)

  def batches(epoch, skip, step):
    """The epoch's device batches from batch `skip` on (with their copies,
    drawn by global step)."""
    host = itertools.islice(
        input_pipeline.train_batches(train_in, train_tg, rows, tc.batch_size,
                                     config.seed, epoch, widths, local),
        skip, None)
    for j, batch in enumerate(host):
      if pool is not None:
        batch.update(pool.draw(step + j, pace_steps, num_aug, aug_local))
      yield sharding.shard_local_batch(batch, mesh)

  def summarize(means, rate, seconds):
    return (f"loss {means['loss']:.4f}  {rate:.0f} seq/s",
            {"train_loss": means["loss"], "seq_per_s": rate,
             "train_epoch_seconds": round(seconds, 3)})

  def valid_metrics(state):
    return evaluate(eval_step, steps.eval_params(state, ema), valid_set,
                    tc.eval_batch_size, eval_widths, mesh)

  rescore_every = (config.augment.rescore_every
                   if pool is not None and config.mode == "diff4rec" else 0)

  def rescore(state, epoch):
    """Curriculum re-scored with the current model (instead of only the
    warm-up model's embeddings); saved so a resumed run uses it too."""
    if epoch % rescore_every:
      return
    table = models.item_table(steps.eval_params(state, ema))
    pool.rescore(np.asarray(table), mesh)
    if is_chief():
      tmp = os.path.join(workdir, f".pool_order_e{epoch}.npy")
      np.save(tmp, pool.order)
      os.replace(tmp, os.path.join(workdir, f"pool_order_e{epoch}.npy"))
    logging.info("epoch %d: curriculum re-scored with the current model",
                 epoch)

  phase = loop.Phase(
      name="", num_epochs=tc.num_epochs,
      batches=lambda epoch, skip, step: (steps_per_epoch,
                                         batches(epoch, skip, step)),
      train_step=lambda state, batch: train_step(state, batch, step_key),
      summarize=summarize, examples_per_epoch=len(rows),
      evaluate=valid_metrics, metric="NDCG@10", eval_every=tc.eval_every,
      patience=tc.patience, checkpoint_every=tc.checkpoint_every,
      log_every_steps=tc.log_every_steps,
      after_epoch=rescore if rescore_every else None)

  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "ckpt",
                                                 "recommender"))
  log = None
  try:
    state, meta = loop.restore(ckpt, state)
    log = runlog.RunLog(workdir, meta["epoch"])
    if rescore_every and meta["epoch"] >= rescore_every:
      pool_lib.restore_order(pool, workdir, meta["epoch"])
    logging.info("training: %d rows, %d steps/epoch, up to %d epochs from "
                 "epoch %d", len(rows), steps_per_epoch, tc.num_epochs,
                 meta["epoch"] + 1)
    result = loop.train(phase, state, meta, ckpt, log,
                        stop_after_epochs=stop_after_epochs)

    # Final: the best-validation parameters on validation and test.
    logging.info("phase: test (best-validation parameters)")
    meta, epoch = result.meta, result.meta["epoch"]
    test_set = input_pipeline.EvalSet.build(ds, "test", max_len)
    t_eval = time.time()
    best_params = steps.eval_params(result.best_state, ema)
    valid = evaluate(eval_step, best_params, valid_set,
                     tc.eval_batch_size, eval_widths, mesh)
    test = evaluate(eval_step, best_params, test_set,
                    tc.eval_batch_size, eval_widths, mesh)
    eval_seconds = time.time() - t_eval
    logging.info("best epoch %d  valid %s", meta["best_epoch"],
                 runlog.fmt_metrics(valid))
    logging.info("best epoch %d  test  %s", meta["best_epoch"],
                 runlog.fmt_metrics(test))
    log.write({"epoch": epoch, "final": True,
               **{f"best_valid/{k}": v for k, v in valid.items()},
               **{f"test/{k}": v for k, v in test.items()}},
              int(result.state["step"]))
  finally:
    if log is not None:
      log.close()
    ckpt.close()
  return {
      "best_epoch": meta["best_epoch"],
      "epochs_run": epoch,
      "valid": valid,
      "test": test,
      "train_seconds": round(meta["train_seconds"], 2),
      "final_eval_seconds": round(eval_seconds, 2),
      "wall_seconds_this_process": round(time.time() - t0, 2),
  }


# ----------------------------------------------------------------------------
# The generator and warm-up phases (modes 'aug' and 'diff4rec')
# ----------------------------------------------------------------------------


def _phase_config(config, **train_overrides):
  c = config.copy_and_resolve_references()
  c.mode = "base"
  for k, v in train_overrides.items():
    c.train[k] = v
  return c


def best_item_table(config, ds, phase_dir: str) -> np.ndarray:
  """Item embeddings [N + 1, D] of the best checkpoint of a recommender run."""
  params, _ = recommender.restore_best_params(config, ds, phase_dir)
  return np.asarray(models.item_table(params))


def teacher_candidates(config, ds):
  """(items [U, M], probs [U, M]) from the finished recommender run in
  `augment.teacher_workdir` (trained on the same data: its
  data_fingerprint.json is checked, or for a run from before fingerprints
  its results' user, action and item counts): its top-M items after each
  user's training prefix, read as its validation read it (repeats kept; the
  prefix's items excluded unless `augment.exclude_history` is False), with
  the softmax of its scores over those M as probabilities."""
  a = config.augment
  wd = a.teacher_workdir
  if not os.path.isfile(os.path.join(wd, "results.json")):
    raise errors.UserError(
        f"augment.teacher_workdir={wd!r}: not a finished run's workdir (no "
        "results.json); train the teacher to the end first.")
  rundir.check_run_data(wd, ds)
  tconfig = ml_collections.ConfigDict(
      rundir.read_json(os.path.join(wd, "config.json")))
  params, meta = recommender.restore_best_params(tconfig, ds, wd)
  logging.info("teacher: %s %s, best epoch %s", tconfig.model.name,
               tconfig.mode, meta.get("epoch"))
  teacher = recommender.Recommender(tconfig, params, ds.num_items)
  indptr, prefix = ds.prefix_csr("valid")
  items, scores = teacher.top_k_internal(indptr, prefix, a.top_m,
                                         exclude_seen=a.exclude_history)
  return items, candidates_lib.softmax_topm(scores)


def candidate_phase(config, ds, workdir: str):
  """(items [U, M], probs [U, M]): the generator phase's top-M (trained in
  `workdir/generator`, resumable, reused when up to date), or a control
  source's candidates (`augment.candidates`)."""
  if config.augment.candidates == "teacher":
    logging.info("phase: candidates of the recommender in %s (no generator)",
                 config.augment.teacher_workdir)
    return teacher_candidates(config, ds)
  if config.augment.candidates != "generator":
    logging.info("phase: %s candidates (control, no generator)",
                 config.augment.candidates)
    return pool_lib.control_candidates(config, ds)
  logging.info("phase: generator")
  topm = generator.load_topm(generator.run_generator_phase(
      config, ds, os.path.join(workdir, "generator")))
  return topm["items"], topm["probs"]


def similarity_embeddings(config, ds, workdir: str) -> np.ndarray:
  """Item embeddings used to score copies (Eq. 11), per config.augment."""
  a = config.augment
  if a.similarity_source == "checkpoint":
    logging.info("similarity: item embeddings of %s", a.similarity_checkpoint)
    return best_item_table(config, ds, a.similarity_checkpoint)
  # 'warmup': a base recommender trained first, in its own folder.
  wd = os.path.join(workdir, "warmup")
  wc = _phase_config(config, num_epochs=a.warmup_epochs,
                     eval_every=a.warmup_epochs, patience=1)
  os.makedirs(wd, exist_ok=True)
  if not os.path.exists(os.path.join(wd, "results.json")):  # else: finished
    logging.info("phase: warm-up recommender (%d epochs) in %s",
                 a.warmup_epochs, wd)
    res = train_recommender(wc, ds, wd)
    runlog.write_json(os.path.join(wd, "results.json"), res)
  return best_item_table(wc, ds, wd)


# ----------------------------------------------------------------------------
# Entry
# ----------------------------------------------------------------------------
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       stop_after_epochs: Optional[int] = None) -> dict:
  """Runs every phase the config asks for and writes workdir/results.json.

  The workdir is locked for the run (`rundir.lock`). A workdir that is
  already finished (results.json written) is not run again: its stored
  results are returned as they are.
  """
  config_lib.validate(config)
  # The dataset's own name (data.dataset_name: after data.path's file
  # unless data.name is given) goes into config.json and results.json.
  config = config.copy_and_resolve_references()
  config.data.name = data_lib.dataset_name(config.data)
  os.makedirs(workdir, exist_ok=True)
  with rundir.lock(workdir, enabled=is_chief()):
    return _run(config, workdir, stop_after_epochs)


def _run(config, workdir: str, stop_after_epochs: Optional[int]) -> dict:
  """`train_and_evaluate` once the workdir is locked."""
  config_lib.check_workdir(config, workdir)
  t0 = time.time()
  logging.info("phase: data (%s)", config.data.get("path") or
               config.data.name)
  prepare.ensure_for_config(config.data)   # a missing public set: fetch it
  ds = data_lib.load(config.data)
  rundir.check_data(workdir, ds, write=is_chief())
  done = os.path.join(workdir, "results.json")
  if os.path.exists(done):
    with open(done) as f:
      stored = json.load(f)
    logging.info("workdir %s is finished (%s); nothing to run. Its results: "
                 "best epoch %s, valid %s, test %s", workdir, done,
                 stored.get("best_epoch"), runlog.fmt_metrics(stored["valid"]),
                 runlog.fmt_metrics(stored["test"]))
    return stored
  # Only a start whose config and data are accepted marks the workdir: a
  # failed start leaves it as it was, so the corrected command is not
  # refused as "a different config".
  os.makedirs(workdir, exist_ok=True)
  runlog.write_json(os.path.join(workdir, "config.json"), config.to_dict())
  pool = None
  if config.mode in ("aug", "diff4rec"):
    pool = pool_lib.load_cached(config, ds, workdir)
    if pool is None:
      cand, prob = candidate_phase(config, ds, workdir)      # 1. generator
      item_emb = similarity_embeddings(config, ds, workdir)  # 2. warm-up
      pool = pool_lib.build_pool(config, ds, workdir, cand,  # 3. copies
                                 prob, item_emb)
  logging.info("phase: recommender (%s, %s mode)", config.model.name,
               config.mode)
  results = train_recommender(config, ds, workdir,
                              stop_after_epochs=stop_after_epochs, pool=pool)
  results.update({
      "config": config.to_dict(),
      "dataset": {"name": ds.name, "source": ds.source, **ds.stats()},
      "devices": [str(d) for d in jax.devices()],
      "code": runlog.code_version(),
      "machine": runlog.machine_info(),
      "wall_seconds_this_process": round(time.time() - t0, 2),
  })
  runlog.write_json(os.path.join(workdir, "results.json"), results)
  return results
