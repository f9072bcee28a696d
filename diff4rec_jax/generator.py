"""The generator phase: train the latent diffusion model, emit top-M items.

This module owns phase 1 of Diff4Rec (paper sections 3.2-3.3):

* Inputs (input_pipeline.py: `train_rows`, `epoch_batches`, `make_batch`):
  each user's row x_u is the set of items in the user's TRAINING PREFIX
  only (the validation and test items are never read), capped to the most
  recent `history_cap`, packed into flat bags of at most B users and P
  items (a padded [B, H_max] batch is 14x larger than the data on ML-1M,
  and measured 9x slower). No dense [users, items] matrix exists anywhere.
* Training (`generator_steps.make_train_step`): one jitted, donated pure
  step on the joint objective of Eq. 8, written as a loss to minimize:

      L = NLL_mult(x_u | z) + beta * KL(q(z|x_u) || N(0, I))
          + lambda * ||target - f_theta(z_t, t)||^2

  with z ~ q(z | x_u) (reparameterized), z_0 = z, t uniform, target = eps
  (Eq. 7) or z_0 (`predict='z0'`), beta the KL annealing ramp.
* Inference (`infer_all`): z_0 = mu(x_u), corrupted to `inference_step` with
  q_sample and denoised back to 0 (mean-only steps unless
  `sampling_noise`), decoded to x_hat_u. The top-M items exclude every item
  of the user's training prefix and the padding id 0. Their probabilities
  are softmax(x_hat_u) over all non-history items (`prob_norm='all'`: rows
  sum to <= 1, the mass the decoder puts on the top M) or renormalized over
  the M items (`prob_norm='topm'`). The forward noise of a user is drawn
  from a key folded with the user's row index, so the output does not
  depend on the batch size.
* Evaluation on the validation split (`infer_all`'s ranks): the same
  scores, ranked over all items with the training prefix masked (the target
  itself excepted, like `metrics.py`), HR@10 / NDCG@10, ties pessimistic,
  for the generator and for the VAE alone (decode mu, no diffusion).
* The phase (`run_generator_phase`): epochs of shuffled user batches in
  the training loop (loop.py: progress lines, `generator_metrics.jsonl`,
  checkpoints, resume, preemption), then `generator_topm.npz` (atomic
  write, tagged with a config hash) and the validation metrics.

Data parallelism (`sharding.make_mesh`, the recommender's 1-D ('data',)
mesh): state and params replicated; the per-user arrays of a batch (valid
[B]; users, targets [B] at inference) sharded on B, and the compiled steps
pin the encoder's [B, Z] output to that sharding, so the O(B x N) work
(denoiser, decoder logits, losses, top-M, ranks) is split over the devices.
The flat bag (ids, seg [P]) is replicated: P is a token budget shared by the
batch's users, and keeping it whole leaves the batches, the packing and
every random draw (dropout over [P], noise over [B, Z]) those of one device,
so a run does not depend on the device count (up to the order of float
sums); its O(P x hidden) layer is small next to the decoder's O(B x Z x N).
`generator.batch_size` must be a multiple of the device count (checked: it
shapes the trajectory); `infer_batch_size` is rounded up to one. With
several processes each builds the (small) bag and hands over its own rows
of the per-user arrays; process 0 alone writes `generator_metrics.jsonl`
and the top-M file, which the others read after a barrier.

Item ids are 1-based; 0 is padding and never appears in the output except
as filler where a user has fewer than M non-history items (probability 0).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Optional

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from diff4rec_jax import checkpointing
from diff4rec_jax import config_lib
from diff4rec_jax import data as data_lib
from diff4rec_jax import errors
from diff4rec_jax import generator_steps
from diff4rec_jax import input_pipeline
from diff4rec_jax import loop
from diff4rec_jax import metrics as metrics_lib
from diff4rec_jax import runlog
from diff4rec_jax import sharding

TOPM_FILE = "generator_topm.npz"
METRICS_FILE = "generator_metrics.jsonl"
CKPT_SUBDIR = os.path.join("ckpt", "generator")


# Fields that do not change the training trajectory: a checkpoint made under
# other values of these may be resumed (e.g. more epochs, another M).
_NON_TRAINING_FIELDS = ("enabled", "epochs", "checkpoint_every", "top_m",
                        "prob_norm", "infer_batch_size", "inference_step",
                        "sampling_noise", "eval_at_end")


# -- config -----------------------------------------------------------------
def _block(config):
  return config_lib.sub_block(config, "generator")


def generator_seed(config) -> int:
  """The generator's seed: `generator.seed`, or the run's `seed` when it is
  -1 (the default). A fixed generator seed lets runs of several seeds share
  one generator (and its top-M file): the seeds then vary the recommender
  and the copies, not the candidates."""
  g = _block(config)
  if g.get("seed", -1) >= 0:
    return int(g.seed)
  return int(config.seed) if "seed" in config else 0


def topm_excludes_history(config) -> bool:
  """Whether the top-M leaves out the user's training items: the full
  config's `augment.exclude_history` (True when absent)."""
  if isinstance(config, ml_collections.ConfigDict) and "augment" in config:
    return bool(config.augment.get("exclude_history", True))
  return True


def _hash(obj) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest(
  )[:16]


def _settings_hash(config, ds: data_lib.SequenceData, leave_out=()) -> str:
  g = {k: v for k, v in _block(config).to_dict().items()
       if k not in leave_out + ("seed",)}
  seed = generator_seed(config)   # the effective seed, whichever field
  return _hash({"generator": g, "seed": seed, "dataset": ds.name,
                "users": ds.num_users, "items": ds.num_items,
                "nnz": int(ds.items.size)})


def config_hash(config, ds: data_lib.SequenceData) -> str:
  """Hash of what the top-M file depends on: generator block, seed, data."""
  return _settings_hash(config, ds)


def train_hash(config, ds: data_lib.SequenceData) -> str:
  """Hash of what the training trajectory depends on (checkpoint guard)."""
  return _settings_hash(config, ds, _NON_TRAINING_FIELDS)


# -- placement --------------------------------------------------------------
_BAG_KEYS = ("ids", "seg", "hist", "hseg")


def place_batch(batch: dict, mesh) -> dict:
  """A host batch on the mesh: bag arrays replicated, per-user ones sharded.

  Keys 'ids', 'seg', 'hist', 'hseg' ([P] flat bags) are replicated; every
  other array ([B, ...]: valid, users, targets) is sharded on B.
  """
  bag = {k: v for k, v in batch.items() if k in _BAG_KEYS}
  per_user = {k: v for k, v in batch.items() if k not in _BAG_KEYS}
  return {**sharding.replicate(bag, mesh),
          **sharding.shard_batch(per_user, mesh)}


# -- inference and evaluation -----------------------------------------------
def infer_batch_size(config, mesh) -> int:
  """`infer_batch_size` rounded up to a multiple of the device count."""
  return sharding.round_up(_block(config).infer_batch_size, mesh)


def infer_all(config, params, ds: data_lib.SequenceData, rows=None,
              hist_rows=None, with_eval: bool = True,
              exclude_history: bool = True):
  """Runs inference for every user in fixed-shape batches.

  Device memory is O(batch x items); the host keeps only [U, M] outputs.
  Data-parallel over all devices (`sharding.make_mesh()`): params
  replicated, each batch's users sharded; batches hold
  `infer_batch_size(config, mesh)` users (the output does not depend on the
  batch size).

  Args:
    config: full config (uses `generator` and `seed`).
    params: generator params.
    ds: the dataset.
    rows, hist_rows: optional precomputed (indptr, items) of `train_rows`
      with and without the cap.
    with_eval: also rank the validation targets (else the ranks are 0).
    exclude_history: the top-M leaves out the training prefix (else only
      the padding id).
  Returns:
    (items [U, M] int32, probs [U, M] float32, rank_gen [U] int32,
     rank_vae [U] int32).
  """
  g = _block(config)
  seed = generator_seed(config)
  if rows is None:
    rows = input_pipeline.train_rows(ds, g.history_cap)
  if hist_rows is None:
    hist_rows = (rows if g.history_cap == 0 else
                 input_pipeline.train_rows(ds, 0))
  mesh = sharding.make_mesh()
  infer_fn = generator_steps.cached_infer_fn(generator_steps.config_key(g),
                                             ds.num_items, with_eval,
                                             exclude_history)
  key = sharding.replicate(generator_steps.phase_keys(seed)["infer"], mesh)
  params = sharding.replicate(params, mesh)
  u, m = ds.num_users, g.top_m
  out_items = np.zeros((u, m), np.int32)
  out_probs = np.zeros((u, m), np.float32)
  rank_gen = np.zeros(u, np.int32)
  rank_vae = np.zeros(u, np.int32)

  def fetch(pending):
    us, ok, outs = pending
    it, pr, rg, rv = (sharding.to_host(x) for x in outs)
    out_items[us[ok]], out_probs[us[ok]] = it[ok], pr[ok]
    rank_gen[us[ok]], rank_vae[us[ok]] = rg[ok], rv[ok]

  pending = None
  for us, ok, batch in input_pipeline.infer_batches(
      rows, hist_rows, ds.targets("valid").astype(np.int32),
      infer_batch_size(g, mesh)):
    batch = place_batch(batch, mesh)
    outs = infer_fn(params, batch["ids"], batch["seg"], batch["hist"],
                    batch["hseg"], batch["targets"], batch["users"], key)
    # Dispatch batch k before waiting on batch k - 1.
    if pending is not None:
      fetch(pending)
    pending = (us, ok, outs)
  fetch(pending)
  return out_items, out_probs, rank_gen, rank_vae


def generate_topm(config, params, ds: data_lib.SequenceData):
  """(items [U, M] int32, probs [U, M] float32) for every user."""
  items, probs, _, _ = infer_all(config, params, ds, with_eval=False)
  return items, probs


# -- files ------------------------------------------------------------------
def save_topm(path: str, items: np.ndarray, probs: np.ndarray, chash: str,
              ds: data_lib.SequenceData, extra: Optional[dict] = None) -> None:
  """Writes the top-M file atomically (temp file + os.replace)."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "wb") as f:
    np.savez(f, items=items, probs=probs, user_ids=ds.user_ids,
             config_hash=np.str_(chash), dataset=np.str_(ds.name),
             extra=np.str_(json.dumps(extra or {})))
  os.replace(tmp, path)


def load_topm(path: str) -> dict:
  """The top-M file as a dict: items, probs, user_ids, config_hash, ..."""
  with np.load(path) as z:
    out = {k: z[k] for k in z.files}
  for k in ("config_hash", "dataset", "extra"):
    out[k] = str(out[k])
  out["extra"] = json.loads(out["extra"])
  return out


def _topm_hash(path: str) -> Optional[str]:
  try:
    with np.load(path) as z:
      return str(z["config_hash"])
  except (OSError, KeyError, ValueError) as e:
    logging.warning("%s: unreadable (%s); regenerating it.", path, e)
    return None


def _like_fresh(tree):
  """Restored arrays as uncommitted device arrays, like a fresh init.

  Orbax returns arrays committed to an explicit sharding; the compiled steps
  key their cache on input shardings, so a resumed run would otherwise
  compile every step a second time.
  """
  return jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), tree)


def restore_params(config, ds: data_lib.SequenceData, workdir: str) -> dict:
  """The generator params of the latest checkpoint in `workdir`."""
  g = _block(config)
  seed = generator_seed(config)
  target = generator_steps.init_state(
      g, ds.num_items, generator_steps.phase_keys(seed)["init"])
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, CKPT_SUBDIR))
  try:
    state, _ = ckpt.restore(target)
  finally:
    ckpt.close()
  return _like_fresh(state["params"])


# -- the phase ----------------------------------------------------------------
def run_generator_phase(config, ds: data_lib.SequenceData, workdir: str, *,
                        stop_after_epoch: Optional[int] = None
                        ) -> Optional[str]:
  """Trains the generator, writes `generator_topm.npz`, returns its path.

  Resumable: an existing top-M file with the same config hash is returned
  at once; otherwise training resumes from the latest checkpoint in
  `workdir/ckpt/generator` (which must come from the same training
  settings), metrics after that checkpoint are dropped and recomputed, so a
  resumed run ends with the same params, metrics and file as a straight one.
  The epochs run in the training loop (loop.py), which this phase gives its
  batches, its step and no evaluation: the validation metrics are computed
  once, after training, with the top-M.

  Args:
    config: full config (`generator` block, `seed`).
    ds: the dataset.
    workdir: the run's folder.
    stop_after_epoch: test hook simulating preemption: return None after this
      epoch (a checkpoint is saved first).
  Returns:
    The top-M file's path, or None when stopped early.
  """
  g = _block(config)
  config_lib.validate_generator_config(config, ds.num_items)
  mesh = sharding.make_mesh()
  sharding.check_batch(g.batch_size, mesh, "config.generator.batch_size")
  seed = generator_seed(config)
  os.makedirs(workdir, exist_ok=True)
  out_path = os.path.join(workdir, TOPM_FILE)
  chash, thash = config_hash(config, ds), train_hash(config, ds)
  exclude = topm_excludes_history(config)
  if not exclude:
    chash = _hash([chash, "top-M with history items"])
  if os.path.exists(out_path) and _topm_hash(out_path) == chash:
    logging.info("generator: %s is up to date (config %s); skipping.",
                 out_path, chash)
    return out_path

  rows = input_pipeline.train_rows(ds, g.history_cap)
  hist_rows = rows if g.history_cap == 0 else input_pipeline.train_rows(ds, 0)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, CKPT_SUBDIR))
  log = None
  try:
    fresh = generator_steps.init_state(
        g, ds.num_items, generator_steps.phase_keys(seed)["init"])
    state, meta = loop.restore(
        ckpt, fresh, what="generator", place=_like_fresh,
        check=lambda meta: _check_train_hash(ckpt.directory, meta, thash))
    state = sharding.replicate(state, mesh)
    log = runlog.RunLog(workdir, meta["epoch"], METRICS_FILE)
    phase = _train_phase(g, ds, rows, seed, mesh,
                         {"train_hash": thash, "config_hash": chash})
    try:
      state = loop.train(phase, state, meta, ckpt, log,
                         stop_after_epochs=stop_after_epoch).state
    except runlog.Interrupted as e:
      if e.signum is not None:   # a signal: main.py exits 128 + signum
        raise
      logging.info("generator: stopping after epoch %d (requested)",
                   stop_after_epoch)
      return None

    t0 = time.time()
    items, probs, rg, rv = infer_all(config, state["params"], ds, rows,
                                     hist_rows, with_eval=g.eval_at_end,
                                     exclude_history=exclude)
    secs = time.time() - t0
    extra = {"inference_seconds": secs}
    if g.eval_at_end:
      ev = {"generator": metrics_lib.hr_ndcg(rg, generator_steps.EVAL_K),
            "vae": metrics_lib.hr_ndcg(rv, generator_steps.EVAL_K)}
      extra["valid"] = ev
      # 'final': a resumed run drops this row and evaluates again.
      log.write({"kind": "eval", "split": "valid", "epoch": g.epochs,
                 "final": True, **ev}, int(state["step"]))
      logging.info("generator valid: diffusion HR@10 %.4f NDCG@10 %.4f | VAE "
                   "alone HR@10 %.4f NDCG@10 %.4f", ev["generator"]["HR@10"],
                   ev["generator"]["NDCG@10"], ev["vae"]["HR@10"],
                   ev["vae"]["NDCG@10"])
  finally:
    if log is not None:
      log.close()
    ckpt.close()
  if sharding.is_chief():
    save_topm(out_path, items, probs, chash, ds, extra)
  # Every process computed the same top-M (`infer_all` gathers all rows);
  # the others read process 0's file next, so wait until it is there.
  sharding.barrier("generator_topm")
  logging.info("generator: wrote top-%d for %d users to %s in %.1fs",
               g.top_m, ds.num_users, out_path, secs)
  return out_path


def _check_train_hash(directory: str, meta: dict, thash: str) -> None:
  if meta.get("train_hash") != thash:
    raise errors.UserError(
        f"{directory}: checkpoint was made with other generator training "
        f"settings (hash {meta.get('train_hash')} != {thash}); use another "
        "workdir or delete that folder.")


def _train_phase(g, ds: data_lib.SequenceData, rows, seed: int, mesh,
                 meta: dict) -> loop.Phase:
  """What the generator gives the training loop: shuffled user batches of
  sparse rows (`input_pipeline.epoch_batches`), the jitted step, and the
  epoch's mean loss terms per user."""
  lengths = np.diff(rows[0])
  tokens = input_pipeline.token_budget(lengths, g.batch_size, g.batch_tokens)
  train_step = generator_steps.cached_train_step(
      generator_steps.config_key(g), ds.num_items)
  train_key = sharding.replicate(generator_steps.phase_keys(seed)["train"],
                                 mesh)
  logging.info("generator: %d users, %d items, batches of <= %d users and "
               "<= %d items, %d epochs", ds.num_users, ds.num_items,
               g.batch_size, tokens, g.epochs)

  def batches(epoch, skip, step):
    del step  # the step folds into the key inside the jitted step
    users, valid = input_pipeline.epoch_batches(lengths, g.batch_size, tokens,
                                                seed, epoch)
    return users.shape[0], (
        place_batch(input_pipeline.make_batch(rows[0], rows[1], users[k],
                                              valid[k], tokens), mesh)
        for k in range(skip, users.shape[0]))

  def summarize(m, rate, seconds):
    text = (f"loss {m['loss']:.4f} (nll {m['nll']:.4f} kl {m['kl']:.4f} "
            f"noise {m['noise']:.4f} beta {m['beta']:.3f})  "
            f"{rate:.0f} users/s")
    return text, {"kind": "train",
                  **{k: m[k] for k in ("loss", "nll", "kl", "noise", "beta")},
                  "users_per_s": rate, "seconds": seconds}

  return loop.Phase(
      name="generator", num_epochs=g.epochs, batches=batches,
      train_step=lambda state, batch: train_step(state, batch, train_key),
      summarize=summarize, examples_per_epoch=ds.num_users,
      count_key="count", evaluate=None,
      checkpoint_every=g.checkpoint_every, meta=meta,
      hint="lower generator.lr or check the data.")
