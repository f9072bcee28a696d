"""The generator phase: train the latent diffusion model, emit top-M items.

This module owns phase 1 of Diff4Rec (paper sections 3.2-3.3):

* Inputs (`train_rows`, `epoch_batches`, `make_batch`): each user's row x_u
  is the set of items in the user's TRAINING PREFIX only (all but the last
  two items; the validation and test items are never read), as a CSR array
  of unique ids in time order (most recent last), capped to the most recent
  `history_cap`. A batch is a flat bag: ids [P] and seg [P] (the batch slot
  of each entry) plus a [B] validity mask, holding at most B users and at
  most P items (`pack_batches`), so the encoder's bag costs O(nnz x hidden)
  however long the longest user is (a padded [B, H_max] batch is 14x larger
  than the data on ML-1M, and measured 9x slower than the dense layer).
  P and B are static: the step compiles once. No dense [users, items]
  matrix exists anywhere.
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
* Evaluation on the validation split (`evaluate_generator`): the same
  scores, ranked over all items with the training prefix masked (the target
  itself excepted, like `metrics.py`), HR@10 / NDCG@10, ties pessimistic,
  for the generator and for the VAE alone (decode mu, no diffusion).
* The phase (`run_generator_phase`): epochs of shuffled user batches, a
  progress line per epoch, `generator_metrics.jsonl`, checkpoints, resume,
  and `generator_topm.npz` (atomic write, tagged with a config hash).

Data parallelism (`sharding.make_mesh`, the recommender's 1-D ('data',)
mesh): the train state and params are replicated; the per-user arrays of a
batch (valid [B]; users and targets [B] at inference) are sharded on B, and
the compiled steps pin the encoder's [B, Z] output to that sharding, so the
denoiser, the decoder's [B, N + 1] logits, the losses, top-M and ranks (the
O(B x N) work) are split over the devices. The flat bag (ids, seg [P]) is
replicated: P is a token budget shared by the batch's users, not a per-user
axis, and keeping it whole leaves the batches, the packing and every random
draw (dropout over [P], noise over [B, Z]) exactly those of one device, so a
run does not depend on the device count (up to the order of float sums).
The bag layer costs O(P x hidden), small next to the decoder's O(B x Z x N);
packing a sub-bag per device would split it too but make the batches depend
on the device count. `config.generator.batch_size` must be a multiple of the
device count (checked, it shapes the training trajectory);
`infer_batch_size` is rounded up to one (the output does not depend on it).
Several processes (`jax.distributed`): each builds the (small, replicated)
bag and hands over only its own rows of the per-user arrays; process 0
alone writes `generator_metrics.jsonl` and the top-M file, which the others
read after a barrier (the workdir is shared, as Orbax's multi-host
checkpoints require).

Item ids are 1-based; 0 is padding and never appears in the output except
as filler where a user has fewer than M non-history items (probability 0).
"""

from __future__ import annotations

import hashlib
import json
import math
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
from diff4rec_jax import metrics as metrics_lib
from diff4rec_jax import rundir
from diff4rec_jax import sharding

TOPM_FILE = "generator_topm.npz"
METRICS_FILE = "generator_metrics.jsonl"
CKPT_SUBDIR = os.path.join("ckpt", "generator")
# Seconds between step-level progress lines within a generator epoch.
PROGRESS_SECONDS = 30.0


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


def config_hash(config, ds: data_lib.SequenceData) -> str:
  """Hash of what the top-M file depends on: generator block, seed, data."""
  g = {k: v for k, v in _block(config).to_dict().items() if k != "seed"}
  seed = generator_seed(config)   # the effective seed, whichever field
  return _hash({"generator": g, "seed": seed, "dataset": ds.name,
                "users": ds.num_users, "items": ds.num_items,
                "nnz": int(ds.items.size)})


def train_hash(config, ds: data_lib.SequenceData) -> str:
  """Hash of what the training trajectory depends on (checkpoint guard)."""
  g = {k: v for k, v in _block(config).to_dict().items()
       if k not in _NON_TRAINING_FIELDS + ("seed",)}
  seed = generator_seed(config)
  return _hash({"generator": g, "seed": seed, "dataset": ds.name,
                "users": ds.num_users, "items": ds.num_items,
                "nnz": int(ds.items.size)})


# -- inputs -----------------------------------------------------------------
def train_rows(ds: data_lib.SequenceData, cap: int = 0):
  """Each user's unique training-prefix items, time order, as CSR.

  Reads items[indptr[u]:split_end('train')[u]] only: validation and test
  items never enter. A repeated item is placed at its last occurrence. With
  `cap` > 0 only the `cap` most recent unique items are kept.

  Returns:
    (indptr [U+1] int64, items [n] int32).
  """
  u = ds.num_users
  start = ds.indptr[:-1].astype(np.int64)
  end = ds.split_end("train").astype(np.int64)
  rows, pos = data_lib.row_ranges(start, end)
  items = ds.items[pos]
  # Unique (row, item), keeping the last position of each.
  order = np.lexsort((-pos, items, rows))
  rows, items, pos = rows[order], items[order], pos[order]
  first = np.ones(rows.size, dtype=bool)
  first[1:] = (rows[1:] != rows[:-1]) | (items[1:] != items[:-1])
  rows, items, pos = rows[first], items[first], pos[first]
  order = np.lexsort((pos, rows))
  rows, items = rows[order], items[order]
  counts = np.bincount(rows, minlength=u)
  if cap > 0:
    row_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(rows.size) - row_start[rows]
    keep = rank >= counts[rows] - cap
    rows, items = rows[keep], items[keep]
    counts = np.bincount(rows, minlength=u)
  indptr = np.zeros(u + 1, dtype=np.int64)
  np.cumsum(counts, out=indptr[1:])
  return indptr, items.astype(np.int32)


def token_budget(lengths: np.ndarray, batch_size: int, tokens: int = 0,
                 slack: float = 1.5) -> int:
  """P, the static number of bag entries of a batch.

  `tokens` > 0 is used as given (raised to the longest row if below it);
  0 means slack x batch_size x mean row length, at least the longest row,
  rounded up to a multiple of 256.
  """
  longest = max(1, int(lengths.max(initial=0)))
  if tokens <= 0:
    tokens = int(math.ceil(slack * batch_size * max(float(lengths.mean()),
                                                    1.0)))
    tokens = -(-tokens // 256) * 256
  return max(tokens, longest)


def pack_batches(order: np.ndarray, lengths: np.ndarray, batch_size: int,
                 tokens: int):
  """Cuts users, in the given order, into batches of <= B users, <= P items.

  Greedy: each batch takes users in order until the next one would exceed
  either limit (P >= the longest row, so every batch holds at least one
  user). The loop is over batches, not users.

  Args:
    order: [U] user rows in batch order.
    lengths: [U] row lengths (indexed by user row).
    batch_size: B.
    tokens: P.
  Returns:
    (users [nb, B] int64, valid [nb, B] bool); padding slots hold row 0.
  """
  u = order.size
  cum = np.concatenate([[0], np.cumsum(lengths[order], dtype=np.int64)])
  bounds = []
  s = 0
  while s < u:
    e_tok = int(np.searchsorted(cum, cum[s] + tokens, side="right")) - 1
    e = max(s + 1, min(s + batch_size, e_tok, u))
    bounds.append((s, e))
    s = e
  nb = max(1, len(bounds))
  users = np.zeros((nb, batch_size), np.int64)
  valid = np.zeros((nb, batch_size), bool)
  for k, (s, e) in enumerate(bounds):
    users[k, :e - s] = order[s:e]
    valid[k, :e - s] = True
  return users, valid


def epoch_batches(lengths: np.ndarray, batch_size: int, tokens: int,
                  seed: int, epoch: int, shuffle: bool = True):
  """The batches of an epoch: `pack_batches` over a seeded permutation.

  The order is drawn from (seed, epoch) alone, so a resumed run sees the
  same batches; `shuffle=False` keeps row order (inference).
  """
  u = lengths.size
  if shuffle:
    order = np.random.default_rng([seed, epoch]).permutation(u)
  else:
    order = np.arange(u)
  return pack_batches(order, lengths, batch_size, tokens)


def flat_rows(indptr: np.ndarray, items: np.ndarray, users: np.ndarray,
              valid: np.ndarray, tokens: int):
  """The rows of the valid users as a flat bag padded to P entries.

  Returns:
    ids [P] int32 (0 = padding), seg [P] int32 (slot of each entry in the
    batch; padding points at slot 0 with id 0, which weighs nothing).
  """
  start = indptr[users]
  lens = np.where(valid, indptr[users + 1] - start, 0)
  n = int(lens.sum())
  if n > tokens:
    raise ValueError(f"batch holds {n} items, more than its budget {tokens}")
  seg, pos = data_lib.row_ranges(start, start + lens)
  ids = np.zeros(tokens, np.int32)
  ids[:n] = items[pos]
  seg_out = np.zeros(tokens, np.int32)
  seg_out[:n] = seg
  return ids, seg_out


def make_batch(indptr, items, users, valid, tokens: int) -> dict:
  """A train batch: ids [P] int32, seg [P] int32, valid [B] float32."""
  ids, seg = flat_rows(indptr, items, users, valid, tokens)
  return {"ids": ids, "seg": seg, "valid": valid.astype(np.float32)}


# -- models and state ---------------------------------------------------------


# -- training -----------------------------------------------------------------


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


# -- inference and evaluation -------------------------------------------------


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
    rows = train_rows(ds, g.history_cap)
  if hist_rows is None:
    hist_rows = rows if g.history_cap == 0 else train_rows(ds, 0)
  mesh = sharding.make_mesh()
  infer_fn = generator_steps.cached_infer_fn(generator_steps.config_key(g),
                                             ds.num_items, with_eval,
                                             exclude_history)
  key = sharding.replicate(generator_steps.phase_keys(seed)["infer"], mesh)
  params = sharding.replicate(params, mesh)
  u, b, m = ds.num_users, infer_batch_size(g, mesh), g.top_m
  hist_lens = np.diff(hist_rows[0])
  tokens = token_budget(hist_lens, b)  # the full prefix >= the capped rows
  users, valid = epoch_batches(hist_lens, b, tokens, seed, 0, shuffle=False)
  targets = ds.targets("valid").astype(np.int32)
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
  for k in range(users.shape[0]):
    us, ok = users[k], valid[k]
    ids, seg = flat_rows(rows[0], rows[1], us, ok, tokens)
    if hist_rows is rows:
      hist, hseg = ids, seg
    else:
      hist, hseg = flat_rows(hist_rows[0], hist_rows[1], us, ok, tokens)
    batch = place_batch({"ids": ids, "seg": seg, "hist": hist, "hseg": hseg,
                         "targets": targets[us], "users": us.astype(np.int32)},
                        mesh)
    outs = infer_fn(params, batch["ids"], batch["seg"], batch["hist"],
                    batch["hseg"], batch["targets"], batch["users"], key)
    # Dispatch batch k before waiting on batch k - 1.
    if pending is not None:
      fetch(pending)
    pending = (us, ok, outs)
  fetch(pending)
  return out_items, out_probs, rank_gen, rank_vae


def evaluate_generator(config, params, ds: data_lib.SequenceData) -> dict:
  """Validation HR@10 / NDCG@10 of the generator and of the VAE alone.

  Returns:
    {'generator': {'HR@10', 'NDCG@10'}, 'vae': {...}}.
  """
  _, _, rg, rv = infer_all(config, params, ds)
  return {"generator": metrics_lib.hr_ndcg(rg, generator_steps.EVAL_K),
          "vae": metrics_lib.hr_ndcg(rv, generator_steps.EVAL_K)}


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


def _read_metrics(path: str) -> list:
  if not os.path.exists(path):
    return []
  return rundir.read_jsonl(path)


def _write_metrics(path: str, records: list) -> None:
  if not sharding.is_chief():   # run files: process 0 writes them
    return
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    for r in records:
      f.write(json.dumps(r) + "\n")
  os.replace(tmp, path)


def _append_metrics(path: str, record: dict) -> None:
  if not sharding.is_chief():
    return
  with open(path, "a") as f:
    f.write(json.dumps(record) + "\n")


def _fmt_secs(s: float) -> str:
  s = int(round(s))
  return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


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

  Args:
    config: full config (`generator` block, `seed`).
    ds: the dataset.
    workdir: the run's folder.
    stop_after_epoch: test hook simulating preemption: return None after this
      epoch (without a checkpoint beyond the regular ones).
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
  metrics_path = os.path.join(workdir, METRICS_FILE)
  chash, thash = config_hash(config, ds), train_hash(config, ds)
  exclude = topm_excludes_history(config)
  if not exclude:
    chash = _hash([chash, "top-M with history items"])
  if os.path.exists(out_path) and _topm_hash(out_path) == chash:
    logging.info("generator: %s is up to date (config %s); skipping.",
                 out_path, chash)
    return out_path

  keys = generator_steps.phase_keys(seed)
  rows = train_rows(ds, g.history_cap)
  hist_rows = rows if g.history_cap == 0 else train_rows(ds, 0)
  lengths = np.diff(rows[0])
  tokens = token_budget(lengths, g.batch_size, g.batch_tokens)
  state = generator_steps.init_state(g, ds.num_items, keys["init"])
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, CKPT_SUBDIR))
  try:
    start_epoch = 0
    if ckpt.latest_step() is not None:
      try:
        state, meta = ckpt.restore(state)
      except Exception as e:  # Orbax raises various types on a mismatch.
        raise errors.UserError(
            f"{ckpt.directory}: cannot restore the generator checkpoint "
            f"({type(e).__name__}: {e}); it was probably made with other "
            "generator settings (model sizes, dataset). Use another workdir "
            "or delete that folder.") from e
      state = _like_fresh(state)
      if meta.get("train_hash") != thash:
        raise errors.UserError(
            f"{ckpt.directory}: checkpoint was made with other generator "
            f"training settings (hash {meta.get('train_hash')} != {thash}); "
            "use another workdir or delete that folder.")
      start_epoch = int(meta["epoch"])
      logging.info("generator: resumed from %s at epoch %d (step %d)",
                   ckpt.directory, start_epoch, int(state["step"]))
    state = sharding.replicate(state, mesh)
    _write_metrics(metrics_path, [
        r for r in _read_metrics(metrics_path)
        if r.get("kind") == "train" and r["epoch"] <= start_epoch])

    u, b = ds.num_users, g.batch_size
    logging.info("generator: %d users, %d items, batches of <= %d users and "
                 "<= %d items, %d epochs", u, ds.num_items, b, tokens,
                 g.epochs)
    train_step = None
    train_key = sharding.replicate(keys["train"], mesh)
    run_secs, run_epochs = 0.0, 0
    for epoch in range(start_epoch + 1, g.epochs + 1):
      if train_step is None:
        train_step = generator_steps.cached_train_step(
            generator_steps.config_key(g), ds.num_items)
      users, valid = epoch_batches(lengths, b, tokens, seed, epoch)
      t0 = time.time()
      acc = None
      t_line = t0
      for k in range(users.shape[0]):
        batch = place_batch(
            make_batch(rows[0], rows[1], users[k], valid[k], tokens), mesh)
        state, sums = train_step(state, batch, train_key)
        acc = sums if acc is None else jax.tree.map(jnp.add, acc, sums)
        if (time.time() - t_line >= PROGRESS_SECONDS and
            k + 1 < users.shape[0]):
          jax.block_until_ready(acc)        # a sync only at progress lines
          t_line = time.time()
          logging.info("generator epoch %d  %d/%d steps  eta epoch %s",
                       epoch, k + 1, users.shape[0], _fmt_secs(
                           (t_line - t0) * (users.shape[0] - k - 1) / (k + 1)))
      acc = jax.device_get(acc)
      secs = time.time() - t0
      run_secs, run_epochs = run_secs + secs, run_epochs + 1
      n = max(float(acc["count"]), 1.0)
      rec = {"kind": "train", "epoch": epoch, "step": int(state["step"]),
             **{k: float(acc[k]) / n for k in ("loss", "nll", "kl", "noise",
                                               "beta")},
             "users_per_s": u / secs, "seconds": secs}
      _append_metrics(metrics_path, rec)
      eta = run_secs / run_epochs * (g.epochs - epoch)
      logging.info(
          "generator epoch %d/%d  loss %.4f (nll %.4f kl %.4f noise %.4f "
          "beta %.3f)  %.0f users/s  %.1fs  eta %s", epoch, g.epochs,
          rec["loss"], rec["nll"], rec["kl"], rec["noise"], rec["beta"],
          rec["users_per_s"], secs, _fmt_secs(eta))
      every = g.checkpoint_every
      if epoch == g.epochs or (every > 0 and epoch % every == 0):
        ckpt.save(int(state["step"]), state,
                  {"epoch": epoch, "train_hash": thash, "config_hash": chash})
      if stop_after_epoch is not None and epoch >= stop_after_epoch and (
          epoch < g.epochs):
        logging.info("generator: stopping after epoch %d (requested)", epoch)
        return None
  finally:
    ckpt.close()

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
    _append_metrics(metrics_path, {"kind": "eval", "split": "valid",
                                   "epoch": g.epochs, **ev})
    logging.info("generator valid: diffusion HR@10 %.4f NDCG@10 %.4f | VAE "
                 "alone HR@10 %.4f NDCG@10 %.4f", ev["generator"]["HR@10"],
                 ev["generator"]["NDCG@10"], ev["vae"]["HR@10"],
                 ev["vae"]["NDCG@10"])
  if sharding.is_chief():
    save_topm(out_path, items, probs, chash, ds, extra)
  # Every process computed the same top-M (`infer_all` gathers all rows);
  # the others read process 0's file next, so wait until it is there.
  sharding.barrier("generator_topm")
  logging.info("generator: wrote top-%d for %d users to %s in %.1fs",
               g.top_m, ds.num_users, out_path, secs)
  return out_path
