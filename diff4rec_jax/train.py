"""Training and evaluation: `train_and_evaluate(config, workdir)`.

Owns the run's phases, the epoch loop, the evaluation cadence, early
stopping, logging and the files a run writes:

  workdir/config.json     the resolved config (a rerun must match it)
  workdir/metrics.jsonl   one JSON object per evaluation
  workdir/results.json    final: config, data statistics, best epoch,
                          validation and test metrics, wall time
  workdir/tb/             TensorBoard event files (tensorboardX)
  workdir/ckpt/...        Orbax checkpoints (see checkpointing.py)

The compiled pieces are pure: `train_step(state, batch, rng) -> (state,
metrics)` (state donated, RNG folded with the step) and `eval_step(params,
sums, batch) -> sums`. Rerunning the same command with the same workdir
resumes from the latest checkpoint and ends with the same results as an
uninterrupted run: shuffling is a function of (seed, epoch), dropout and
negative sampling of (seed, step).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import signal
import threading
import time
from typing import Any, Callable, NamedTuple, Optional

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from diff4rec_jax import augment
from diff4rec_jax import candidates
from diff4rec_jax import checkpointing
from diff4rec_jax import config_lib
from diff4rec_jax import curriculum
from diff4rec_jax import data as data_lib
from diff4rec_jax import errors
from diff4rec_jax import generator
from diff4rec_jax import losses
from diff4rec_jax import metrics as metrics_lib
from diff4rec_jax import models
from diff4rec_jax import rundir
from diff4rec_jax import sharding


# ----------------------------------------------------------------------------
# Compiled steps
# ----------------------------------------------------------------------------
def learning_rate(tc, steps_per_epoch: int):
  """`train.lr` as a float ('constant') or an optax schedule of the step:
  'cosine' = linear warmup from 0 over `lr_warmup_epochs`, then cosine decay
  to 0 at `num_epochs` (early stopping may end the run before that)."""
  if tc.get("lr_schedule", "constant") == "constant":
    return tc.lr
  warmup = tc.get("lr_warmup_epochs", 0) * steps_per_epoch
  total = max(tc.num_epochs * steps_per_epoch, warmup + 1)
  if not warmup:
    return optax.cosine_decay_schedule(tc.lr, total, alpha=0.0)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=tc.lr, warmup_steps=warmup,
      decay_steps=total, end_value=0.0)


class ParamEmaState(NamedTuple):
  """Exponential moving average of the parameters after each update.

  ema: zero-initialized running sum (a params pytree); count: updates seen.
  The average is `ema / (1 - decay ** count)` (debiased as Adam's moments).
  """
  count: jax.Array
  ema: Any


def param_ema(decay: float) -> optax.GradientTransformation:
  """An optax transformation that leaves the updates as they are and keeps
  an exponential moving average of the parameters they produce (Polyak /
  EMA averaging); `eval_params` reads it. Place it last in a chain."""

  def init_fn(params):
    return ParamEmaState(count=jnp.zeros((), jnp.int32),
                         ema=jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params):
    new = optax.apply_updates(params, updates)
    ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p,
                       state.ema, new)
    return updates, ParamEmaState(count=state.count + 1, ema=ema)

  return optax.GradientTransformation(init_fn, update_fn)


def eval_params(state: dict, decay: float):
  """The parameters to evaluate: the debiased EMA of `param_ema(decay)` in
  the optimizer state when `decay` > 0 (`train.ema_decay`), else the raw
  parameters. Before the first update the EMA is empty: raw parameters."""
  if not decay:
    return state["params"]
  ema_state = state["opt_state"][-1]
  if not isinstance(ema_state, ParamEmaState):
    raise ValueError("train.ema_decay > 0 but the optimizer state holds no "
                     "parameter average (built without it?)")
  n = ema_state.count
  scale = 1.0 / (1.0 - jnp.power(jnp.float32(decay), jnp.maximum(n, 1)))
  return jax.tree.map(
      lambda e, p: jnp.where(n > 0, e * scale, p).astype(p.dtype),
      ema_state.ema, state["params"])


def make_optimizer(tc, steps_per_epoch: int = 1
                   ) -> optax.GradientTransformation:
  """Adam or AdamW on `learning_rate(tc, steps_per_epoch)`, followed by
  `param_ema(tc.ema_decay)` when it is > 0; the optimizer state's structure
  does not depend on `steps_per_epoch`."""
  lr = learning_rate(tc, steps_per_epoch)
  if tc.optimizer == "adam":
    tx = optax.adam(lr, b1=tc.b1, b2=tc.b2)
  else:
    tx = optax.adamw(lr, b1=tc.b1, b2=tc.b2, weight_decay=tc.weight_decay)
  decay = tc.get("ema_decay", 0.0)
  return optax.chain(tx, param_ema(decay)) if decay else tx


def init_state(model, tx, rng, max_len: int) -> dict:
  """Train state: a plain dict of params, optimizer state and step."""
  params = model.init(rng, jnp.zeros((1, max_len), jnp.int32))["params"]
  return {"params": params, "opt_state": tx.init(params),
          "step": jnp.zeros((), jnp.int32)}


def sequence_loss(model, params, inputs, targets, rng, loss_name: str,
                  num_items: int, train: bool = True,
                  sampled: Optional[losses.SampledSoftmax] = None):
  """(loss_sum, count) of next-item prediction on [B, L] input/target pairs.

  loss_name: 'ce' | 'bce' | 'sampled_ce' (with `sampled`: the number of
  shared negatives and their sampling distribution).
  """
  drop_rng, neg_rng = jax.random.split(rng)
  hidden = model.apply({"params": params}, inputs, train=train,
                       rngs={"dropout": drop_rng})
  table = models.item_table(params)
  if loss_name == "ce":
    return losses.ce_loss(hidden, table, targets,
                          getattr(model, "dtype", "float32"))
  if loss_name == "sampled_ce":
    sampled = sampled or losses.SampledSoftmax()
    neg = losses.sample_shared_negatives(neg_rng, sampled.num_negatives,
                                         num_items, sampled.log_q)
    return losses.sampled_ce_loss(hidden, table, targets, neg, sampled.log_q)
  seen = jnp.concatenate([inputs, targets[:, -1:]], axis=1)
  neg = losses.sample_negatives(neg_rng, seen, num_items, targets.shape)
  return losses.bce_loss(hidden, table, targets, neg)


# Auto micro-batching on CPU: rows x width per chunk at most this many.
AUTO_MICRO_TOKENS = 6400


def sampled_softmax(tc, train_targets: np.ndarray,
                    num_items: int) -> Optional[losses.SampledSoftmax]:
  """The negatives of train.loss='sampled_ce' (None for other losses).

  'popularity' samples items by their count among the training targets
  (`train_targets` [R, L], 0 = none), +1 each, with the logQ correction.
  """
  if tc.loss != "sampled_ce":
    return None
  log_q = None
  if tc.negative_sampler == "popularity":
    counts = np.bincount(train_targets[train_targets > 0],
                         minlength=num_items + 1)
    log_q = losses.popularity_log_q(counts)
  return losses.SampledSoftmax(tc.num_negatives, log_q)


def resolve_micro_batch(value: int, batch_size: int, num_devices: int,
                        backend: Optional[str] = None,
                        width: Optional[int] = None) -> int:
  """Rows per micro-batch of a step, from `config.train.micro_batch`.

  A step over B rows can run its model in B / m chunks of m rows (gradients
  summed in a `lax.scan`, forward passes in a `lax.map`): the same result,
  but on CPU the [m, L, L] attention and [m * L, N] logits arrays stay in
  cache, and peak memory drops B/m-fold. Every chunk is a loop iteration
  with a fixed cost, though, so narrow batches are best in few chunks: on
  the 2-core CI machine a SASRec-BCE step of 128 rows took 38 ms in one
  pass and 53 ms in 4 chunks of 32 at width 32, but 215-229 ms in one pass
  and 149-173 ms in chunks of 32 at width 128 (results/log/speed.md, session
  12). On GPU/TPU one wide batch is faster.

  value: -1 = auto: on CPU, the most rows m that divide the batch, are a
  multiple of the device count and hold at most AUTO_MICRO_TOKENS (6,400)
  positions of width `width` (None: the width is not known, taken as 200);
  so 32 rows at width 200, 64 at width 64, the whole batch of 128 at width
  <= 50. Off on GPU/TPU, and where no such m of >= 8 rows exists.
  0 = off; m > 0 = m rows whatever the width (must divide `batch_size` and
  be a multiple of `num_devices`).
  Returns m, or 0 for one chunk.
  """
  if value == -1:
    backend = backend or jax.default_backend()
    if backend != "cpu":
      return 0
    most = AUTO_MICRO_TOKENS // (width or 200)
    fits = [m for m in range(num_devices, min(most, batch_size) + 1,
                             num_devices) if batch_size % m == 0]
    m = max(fits, default=0)
    return m if 8 <= m < batch_size else 0
  if value == 0 or value >= batch_size:
    return 0
  if batch_size % value or value % num_devices:
    raise errors.UserError(
        f"config.train.micro_batch={value} must divide the batch "
        f"({batch_size}) and be a multiple of the device count "
        f"({num_devices}); or use 0 (off) or -1 (auto).")
  return value


def split_rows(x: jax.Array, n: int) -> jax.Array:
  """[B, ...] -> [n, B / n, ...]; chunk j holds rows j, n + j, 2n + j, ...

  Strided rather than contiguous chunks, so that with rows sharded over the
  mesh every chunk stays spread evenly over all devices (each device scans
  its own rows; nothing is gathered).
  """
  b = x.shape[0]
  return jnp.swapaxes(x.reshape((b // n, n) + x.shape[1:]), 0, 1)


def merge_rows(x: jax.Array) -> jax.Array:
  """Inverse of `split_rows`: [n, B / n, ...] -> [B, ...]."""
  n, k = x.shape[:2]
  return jnp.swapaxes(x, 0, 1).reshape((n * k,) + x.shape[2:])


def micro_batcher(value: int, batch_size: int,
                  num_devices: int) -> Callable[[int], int]:
  """`width -> rows per micro-batch` of `config.train.micro_batch` for
  batches of `batch_size` rows (`resolve_micro_batch`); a bad value raises
  here, not at the first step."""
  resolve_micro_batch(value, batch_size, num_devices)
  return lambda width: resolve_micro_batch(value, batch_size, num_devices,
                                           width=width)


def _num_chunks(batch_shape, micro_batch) -> int:
  """Chunks of a [rows, width] batch; `micro_batch` is rows per chunk
  (0 = one pass) or a function of the width giving them."""
  rows, width = batch_shape[:2]
  m = micro_batch(width) if callable(micro_batch) else micro_batch
  return rows // m if m and rows > m else 1


def make_train_step(model, tx, loss_name: str, num_items: int,
                    aug_weight: float = 1.0,
                    micro_batch: int | Callable[[int], int] = 0,
                    token_norm: float = 0.0,
                    compiler_options: Optional[dict] = None,
                    sampled: Optional[losses.SampledSoftmax] = None,
                    aug_norm: str = "mean") -> Callable:
  """Builds `train_step(state, batch, rng) -> (state, metrics)`.

  batch: {'inputs': [B, L], 'targets': [B, L]} int32, and optionally
  {'aug_inputs': [A, L], 'aug_targets': [A, L]} augmented copies whose
  next-item loss is added with weight `aug_weight` (Eq. 10). Rows whose
  targets are all 0 (batch padding) contribute nothing.

  micro_batch: m > 0 runs the model on B / m chunks of m originals (and
  the same number of chunks of copies; A must divide by it) and sums their
  gradients (a function of the batch width L gives m per width:
  `micro_batcher`): the same loss and gradient as one pass (up to float
  rounding and the dropout/negative draws, which are per chunk). 0: one
  pass.

  token_norm: 0 divides the originals' loss sum by this batch's count of
  target positions (a per-batch mean); t > 0 divides it by t, the same
  constant for every batch (`train.loss_norm='epoch'`: the epoch's mean
  count per batch), so every target position weighs the same whichever
  batch holds it. The copies' loss stays a per-batch mean.

  sampled: the shared negatives of loss_name='sampled_ce' (per chunk).

  aug_norm: 'mean' divides the copies' loss sum by their own count of
  target positions; 'sum' by the originals' count (`augment.loss_norm`:
  Eq. 10's plain sum, so A copies per B originals weigh about A / B).

  compiler_options: XLA options of the compiled step; None = on CPU,
  YNNPACK fusions off for the BCE loss (`sharding.without_ynn`: x1.03-1.17
  whole-epoch SASRec training on the 2-core CI machine) and XLA's defaults
  for CE (its logits product is faster in them: x1.05-1.16).
  """

  def one_pass(params, batch, r_orig, r_aug, n_orig, n_aug):
    """Eq. 10 loss of a (chunk of a) batch, normalized by whole-batch counts."""
    s, _ = sequence_loss(model, params, batch["inputs"], batch["targets"],
                         r_orig, loss_name, num_items, sampled=sampled)
    out = {"loss_orig": s / n_orig}
    loss = out["loss_orig"]
    if "aug_inputs" in batch:
      sa, _ = sequence_loss(model, params, batch["aug_inputs"],
                            batch["aug_targets"], r_aug, loss_name, num_items,
                            sampled=sampled)
      out["loss_aug"] = sa / n_aug
      loss = loss + aug_weight * out["loss_aug"]
    return loss, out

  def count(targets):
    return jnp.maximum(jnp.sum(targets > 0).astype(jnp.float32), 1.0)

  def train_step(state, batch, rng):
    rng = jax.random.fold_in(rng, state["step"])
    r_orig, r_aug = jax.random.split(rng)
    n_orig = (jnp.float32(token_norm) if token_norm > 0
              else count(batch["targets"]))
    n_aug = 1.0
    if "aug_inputs" in batch:
      n_aug = count(batch["aug_targets" if aug_norm == "mean" else "targets"])
    grad_fn = jax.value_and_grad(one_pass, has_aux=True)
    chunks = _num_chunks(batch["inputs"].shape, micro_batch)
    if "aug_inputs" in batch:
      chunks = np.gcd(chunks, batch["aug_inputs"].shape[0])
    if chunks == 1:
      (loss, aux), grads = grad_fn(state["params"], batch, r_orig, r_aug,
                                   n_orig, n_aug)
    else:
      def body(carry, xs):
        j, sub = xs
        (l, a), g = grad_fn(state["params"], sub,
                            jax.random.fold_in(r_orig, j),
                            jax.random.fold_in(r_aug, j), n_orig, n_aug)
        return jax.tree.map(jnp.add, carry, ((l, a), g)), None

      aux0 = {"loss_orig": jnp.zeros(())}
      if "aug_inputs" in batch:
        aux0["loss_aug"] = jnp.zeros(())
      init = ((jnp.zeros(()), aux0),
              jax.tree.map(jnp.zeros_like, state["params"]))
      subs = jax.tree.map(lambda x: split_rows(x, chunks), batch)
      ((loss, aux), grads), _ = jax.lax.scan(
          body, init, (jnp.arange(chunks), subs))
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    new_state = {"params": params, "opt_state": opt_state,
                 "step": state["step"] + 1}
    return new_state, {"loss": loss, **aux}

  if compiler_options is None:
    compiler_options = sharding.without_ynn() if loss_name == "bce" else {}
  return jax.jit(train_step, donate_argnums=(0,),
                 compiler_options=compiler_options)


def make_eval_step(model, num_items: int, chunk: int,
                   mask_history: bool,
                   micro_batch: int | Callable[[int], int] = 0,
                   compiler_options: Optional[dict] = None) -> Callable:
  """Builds `eval_step(params, sums, batch) -> sums` (full ranking).

  batch: {'inputs': [B, L], 'targets': [B], 'history': [B, W] uint32
  bitset of the items to mask (`metrics.history_words`), 'weights': [B]};
  padded rows have weight 0. micro_batch m > 0 (or a function of the
  batch width giving m): the model forward runs over B / m chunks of m rows
  (`lax.map`), the ranking over the whole batch; same result.
  compiler_options: XLA options of the compiled step; None = XLA's
  defaults (its ranking product runs faster in XLA:CPU's YNNPACK fusions:
  x1.11, results/log/speed.md).
  """

  def forward(params, inputs):
    return model.apply({"params": params}, inputs, train=False,
                       last_only=True)[:, -1]                     # [B, D]

  def eval_step(params, sums, batch):
    chunks = _num_chunks(batch["inputs"].shape, micro_batch)
    if chunks == 1:
      last = forward(params, batch["inputs"])
    else:
      last = merge_rows(jax.lax.map(lambda x: forward(params, x),
                                    split_rows(batch["inputs"], chunks)))
    ranks = metrics_lib.target_ranks(
        last, models.item_table(params), batch["targets"],
        batch["history"] if mask_history else None, num_items, chunk)
    new = metrics_lib.metrics_from_ranks(ranks, batch["weights"])
    return jax.tree.map(jnp.add, sums, new)

  return jax.jit(eval_step, donate_argnums=(1,),
                 compiler_options=compiler_options or {})


def zero_sums() -> dict:
  return {k: jnp.zeros((), jnp.float32)
          for k in metrics_lib.METRIC_NAMES + ("count",)}


# ----------------------------------------------------------------------------
# Host-side batching
# ----------------------------------------------------------------------------
@dataclasses.dataclass
class EvalSet:
  """Fixed-shape evaluation arrays of one split for all users."""
  inputs: np.ndarray       # [U, L] int32
  targets: np.ndarray      # [U] int32
  hist_indptr: np.ndarray  # [U + 1] int64
  hist_items: np.ndarray   # [h] int32
  num_items: int           # N: batches carry [B, num_words(N)] bitsets

  @classmethod
  def build(cls, ds: data_lib.SequenceData, split: str, max_len: int):
    inputs, targets = ds.eval_arrays(split, max_len)
    indptr, items = ds.history_csr(split)
    return cls(inputs, targets, indptr, items, ds.num_items)

  def batches(self, batch_size: int, widths: np.ndarray,
              local: slice = slice(None)):
    """Yields padded batches covering every user exactly once.

    Users go in order of history length so that each batch can be cut to
    the narrowest bucket width that holds its longest input (the models'
    outputs do not depend on the amount of left padding); one compile per
    width in use. `local`: only these rows of each global batch are built
    (a process's share, `sharding.local_slice`); the width is still that of
    the global batch.
    """
    u = len(self.targets)
    lengths = (self.inputs > 0).sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, u, batch_size):
      pos = np.arange(start, start + batch_size)
      weights = (pos < u).astype(np.float32)
      rows = order[np.minimum(pos, u - 1)]
      width = int(widths[np.searchsorted(widths, lengths[rows].max())])
      rows, weights = rows[local], weights[local]
      row_of, items = data_lib.csr_entries(self.hist_indptr, self.hist_items,
                                           rows)
      yield {
          "inputs": self.inputs[rows, -width:],
          "targets": self.targets[rows],
          "history": metrics_lib.history_words(row_of, items, len(rows),
                                               self.num_items),
          "weights": weights,
      }


def bucket_widths(config, split: str = "train") -> np.ndarray:
  """Sorted sequence widths used for batches; the last one is max_len.

  split 'train': `train.length_buckets`; 'eval': `train.eval_length_buckets`
  (evaluation batches; () = the training ones). Evaluation results do not
  depend on the widths (`EvalSet.batches`), only its speed does.
  """
  max_len = config.data.max_len
  buckets = config.train.length_buckets
  if split == "eval" and config.train.get("eval_length_buckets", ()):
    buckets = config.train.eval_length_buckets
  ws = {int(w) for w in buckets if 0 < int(w) < max_len}
  return np.array(sorted(ws) + [max_len], dtype=np.int64)


def evaluate(eval_step, params, evalset: EvalSet, batch_size: int,
             widths: np.ndarray, mesh) -> dict:
  """Full-ranking metrics of `params` on one split (all users).

  A progress line every PROGRESS_SECONDS (the sums fetched only there)."""
  sums = sharding.replicate(zero_sums(), mesh)
  local = sharding.local_slice(batch_size, mesh)
  n = -(-len(evalset.targets) // batch_size)
  t0 = last = time.time()
  for i, batch in enumerate(evalset.batches(batch_size, widths, local)):
    sums = eval_step(params, sums, sharding.shard_local_batch(batch, mesh))
    if time.time() - last >= PROGRESS_SECONDS and i + 1 < n:
      jax.block_until_ready(sums)
      last = time.time()
      logging.info("evaluation  %d/%d batches  eta %s", i + 1, n,
                   _fmt_secs((last - t0) * (n - i - 1) / (i + 1)))
  return metrics_lib.finalize(sums)


def train_batches(inputs: np.ndarray, targets: np.ndarray, rows: np.ndarray,
                  batch_size: int, seed: int, epoch: int,
                  widths: np.ndarray, local: slice = slice(None)):
  """Shuffled fixed-size batches of `rows` for one epoch.

  Rows are grouped by length bucket (`widths`, ascending, last = L); each
  batch holds rows of one bucket cut to that bucket's width, the last batch
  of a bucket padded with empty rows (no targets). The order of rows and of
  batches is a function of (seed, epoch) only, so a resumed run replays it,
  and every process of a multi-host run plans the same batches; each builds
  only the `local` rows of each (its `sharding.local_slice`).

  Yields:
    {'inputs': [b, W] int32, 'targets': [b, W] int32}, W in `widths`,
    b = the rows of `local` (B by default).
  """
  rng = np.random.default_rng([seed, epoch])
  bucket = row_buckets(inputs, rows, widths)
  perm = rng.permutation(len(rows))
  perm = perm[np.argsort(bucket[perm], kind="stable")]
  plan = []
  for b in np.unique(bucket):
    members = rows[perm[bucket[perm] == b]]
    steps = -(-len(members) // batch_size)
    members = np.concatenate(
        [members, np.full(steps * batch_size - len(members), -1)])
    plan += [(int(widths[b]), members[i * batch_size:(i + 1) * batch_size])
             for i in range(steps)]
  for i in rng.permutation(len(plan)):
    width, idx = plan[i]
    idx = idx[local]
    live = (idx >= 0)[:, None]
    idx = np.maximum(idx, 0)
    yield {"inputs": np.where(live, inputs[idx, -width:], 0).astype(np.int32),
           "targets": np.where(live, targets[idx, -width:], 0).astype(
               np.int32)}


def row_buckets(inputs, rows, widths) -> np.ndarray:
  """[len(rows)] index into `widths` of the narrowest width holding a row."""
  lengths = (inputs[rows] > 0).sum(axis=1) + 1   # + 1: last target position
  return np.searchsorted(widths, np.minimum(lengths, widths[-1]))


def num_train_steps(inputs, rows, batch_size, widths) -> int:
  counts = np.bincount(row_buckets(inputs, rows, widths))
  return int(sum(-(-c // batch_size) for c in counts if c))


def loss_token_norm(targets, rows, steps_per_epoch: int) -> float:
  """Mean count of target positions per batch over an epoch
  (`train.loss_norm='epoch'`): targets [U, L] int32 (0 = none), `rows` the
  users trained on. With length buckets a short-bucket batch holds a
  fraction of a long one's targets; dividing every batch by this constant
  instead of its own count gives each target position the same weight, as
  random batches at full width do on average.
  """
  return float((targets[rows] > 0).sum()) / max(steps_per_epoch, 1)


# ----------------------------------------------------------------------------
# Run files
# ----------------------------------------------------------------------------
is_chief = sharding.is_chief


# metrics.jsonl fields that measure time, not results (they differ between a
# resumed run and a straight one).
TIMING_FIELDS = ("seq_per_s", "train_epoch_seconds", "eval_seconds")


class RunLog:
  """metrics.jsonl + TensorBoard, written by process 0 only."""

  def __init__(self, workdir: str, resume_epoch: int):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if not is_chief():
      return
    # Drop records newer than the checkpoint we resume from, and the final
    # record of a run killed before results.json: they are redone.
    if os.path.exists(self.path):
      keep = [json.dumps(r) + "\n" for r in rundir.read_jsonl(self.path)
              if r.get("epoch", 0) <= resume_epoch and not r.get("final")]
      _atomic_write(self.path, "".join(keep))
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, "tb"))
    except ImportError:  # TensorBoard files are optional.
      logging.warning("tensorboardX not installed: no TensorBoard files.")

  def write(self, record: dict, step: int) -> None:
    if not is_chief():
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for k, v in record.items():
        if isinstance(v, (int, float)) and k not in ("epoch", "step"):
          self._tb.add_scalar(k.replace("@", "_"), v, step)
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def _atomic_write(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
  if is_chief():
    _atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------
# The recommender phase
# ----------------------------------------------------------------------------
# Seconds between step-level progress lines within an epoch (besides
# train.log_every_steps): an epoch longer than this shows its progress.
PROGRESS_SECONDS = 30.0


class Interrupted(Exception):
  """Raised when a run stops early on purpose (tests, preemption).

  `signum`: the signal that asked for the stop (main.py exits with 128 +
  signum, 143 for SIGTERM), or None (a test's `stop_after_epochs`).
  """

  def __init__(self, msg: str, signum: Optional[int] = None):
    super().__init__(msg)
    self.signum = signum


def train_recommender(config: ml_collections.ConfigDict,
                      ds: data_lib.SequenceData, workdir: str,
                      stop_after_epochs: Optional[int] = None,
                      pool: Optional["AugmentPool"] = None) -> dict:
  """Trains the sequential recommender; returns the results dict.

  Args:
    config: the run config.
    ds: the dataset.
    workdir: run folder (checkpoints under workdir/ckpt/recommender).
    pool: augmented copies (modes 'aug' and 'diff4rec'): each step adds a
      fixed number of copies drawn from the admitted part of the pool.
    stop_after_epochs: end this process after that many epochs have been
      completed in total (a checkpoint is saved first), raising `Interrupted`:
      a stand-in for a killed run in tests.
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
  valid_set = EvalSet.build(ds, "valid", max_len)
  widths = bucket_widths(config)
  eval_widths = bucket_widths(config, "eval")
  steps_per_epoch = num_train_steps(train_in, rows, tc.batch_size, widths)
  tx = make_optimizer(tc, steps_per_epoch)
  ema = tc.get("ema_decay", 0.0)
  key = jax.random.key(config.seed, impl=config.rng_impl)
  init_key, step_key = jax.random.split(key)
  state = sharding.replicate(init_state(model, tx, init_key, max_len), mesh)
  ndev = mesh.devices.size
  micro = micro_batcher(tc.micro_batch, tc.batch_size, ndev)
  eval_micro = micro_batcher(tc.micro_batch, tc.eval_batch_size, ndev)
  token_norm = (loss_token_norm(train_tg, rows, steps_per_epoch)
                if tc.loss_norm == "epoch" else 0.0)
  train_step = make_train_step(model, tx, tc.loss, ds.num_items,
                               config.augment.loss_weight, micro, token_norm,
                               sampled=sampled_softmax(tc, train_tg,
                                                       ds.num_items),
                               aug_norm=config.augment.loss_norm)
  eval_step = make_eval_step(model, ds.num_items, tc.eval_item_chunk,
                             tc.mask_history, eval_micro)
  # Each process builds only its own rows of every batch.
  local = sharding.local_slice(tc.batch_size, mesh)
  if pool is not None:
    num_aug = aug_batch_size(config, mesh)
    aug_local = sharding.local_slice(num_aug, mesh)
    pace_steps = pacing_steps(config, steps_per_epoch)

  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "ckpt",
                                                 "recommender"))
  meta = {"epoch": 0, "best_ndcg10": -1.0, "best_epoch": 0, "bad_evals": 0,
          "finished": False, "train_seconds": 0.0}
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(state)
    logging.info("resumed from %s at epoch %d (step %d)", ckpt.directory,
                 meta["epoch"], int(state["step"]))
  log = RunLog(workdir, meta["epoch"])
  rescore_every = (config.augment.rescore_every
                   if pool is not None and config.mode == "diff4rec" else 0)
  if rescore_every and meta["epoch"] >= rescore_every:
    _restore_pool_order(pool, workdir, meta["epoch"])

  def save(state, meta):
    ckpt.save(int(state["step"]), state, meta)

  def epoch_loop(state, meta, epoch, train_seconds, stop):
    """Runs epochs until done, early stop, or a stop request."""
    while not meta["finished"] and epoch < tc.num_epochs:
      epoch += 1
      t_epoch = time.time()
      # A run preempted mid-epoch resumes after the batches it had done; the
      # batch order is a function of (seed, epoch), so nothing is repeated.
      skip = meta.pop("batches_done", 0)
      loss_sum = jnp.asarray(meta.pop("loss_partial", 0.0), jnp.float32)
      losses = []
      # The step counter on the host (one read an epoch, not a sync a step).
      step0 = int(state["step"]) - skip
      batches = itertools.islice(
          train_batches(train_in, train_tg, rows, tc.batch_size, config.seed,
                        epoch, widths, local), skip, None)
      for i, batch in enumerate(batches, start=skip):
        if pool is not None:
          batch.update(pool.draw(step0 + i, pace_steps, num_aug, aug_local))
        state, m = train_step(state,
                              sharding.shard_local_batch(batch, mesh),
                              step_key)
        losses.append(m["loss"])
        loss_sum = loss_sum + m["loss"]
        # A progress line every log_every_steps steps, after the first step
        # of the process (compilation included), and whenever
        # PROGRESS_SECONDS passed since the last line; the clock is read on
        # the host, the loss fetched (a device sync) only at these lines.
        if ((tc.log_every_steps and (i + 1) % tc.log_every_steps == 0) or
            not progress["lines"] or
            time.time() - progress["last"] >= PROGRESS_SECONDS):
          mean_loss = float(loss_sum) / (i + 1)             # syncs only here
          now = time.time()
          # The rate since the last line of this epoch (or its start): the
          # first step's compilation does not inflate later ETAs.
          if progress["epoch"] == epoch:
            rate = (i + 1 - progress["step"]) / max(now - progress["last"],
                                                    1e-9)
          else:
            rate = (i + 1 - skip) / max(now - t_epoch, 1e-9)
          eta = ("" if not progress["lines"] else
                 f"  eta epoch {_fmt_secs((steps_per_epoch - i - 1) / rate)}")
          logging.info("epoch %d  %d/%d steps  loss %.4f%s%s", epoch, i + 1,
                       steps_per_epoch, mean_loss, eta,
                       "" if progress["lines"] else
                       "  (first step, compilation included: "
                       f"{now - t_epoch:.1f}s)")
          progress.update(lines=progress["lines"] + 1, last=now,
                          epoch=epoch, step=i + 1)
        if stop.agreed(i + 1) and i + 1 < steps_per_epoch:
          _check_finite(losses, state, ckpt)
          meta.update(epoch=epoch - 1, batches_done=i + 1,
                      loss_partial=float(loss_sum),
                      train_seconds=train_seconds + time.time() - t_epoch)
          save(state, meta)
          log.close()
          raise Interrupted(f"{stop.name}: checkpoint saved in epoch {epoch} "
                            f"after batch {i + 1} of {steps_per_epoch} (step "
                            f"{int(state['step'])})", stop.signum)
      _check_finite(losses, state, ckpt)
      loss = float(loss_sum) / steps_per_epoch          # one sync per epoch
      dt = time.time() - t_epoch
      train_seconds += dt
      rate = (steps_per_epoch - skip) / steps_per_epoch * len(rows) / dt
      eta = (tc.num_epochs - epoch) * train_seconds / epoch
      logging.info("epoch %d/%d  loss %.4f  %.0f seq/s  %.1fs  eta %s", epoch,
                   tc.num_epochs, loss, rate, dt, _fmt_secs(eta))
      record = {"epoch": epoch, "step": int(state["step"]), "train_loss": loss,
                "seq_per_s": rate, "train_epoch_seconds": round(dt, 3)}

      if epoch % tc.eval_every == 0 or epoch == tc.num_epochs:
        t_eval = time.time()
        valid = evaluate(eval_step, eval_params(state, ema), valid_set,
                         tc.eval_batch_size, eval_widths, mesh)
        record.update({f"valid/{k}": v for k, v in valid.items()})
        record["eval_seconds"] = round(time.time() - t_eval, 3)
        logging.info("epoch %d valid %s", epoch, _fmt_metrics(valid))
        if valid["NDCG@10"] > meta["best_ndcg10"]:
          meta.update(best_ndcg10=valid["NDCG@10"], best_epoch=epoch,
                      bad_evals=0)
          ckpt.save_best(int(state["step"]), state,
                         {"epoch": epoch, "valid": valid})
        else:
          meta["bad_evals"] += 1
          if meta["bad_evals"] >= tc.patience:
            logging.info("early stop at epoch %d: no better NDCG@10 in %d "
                         "evaluations (best %.4f at epoch %d)", epoch,
                         tc.patience, meta["best_ndcg10"], meta["best_epoch"])
            meta["finished"] = True
      if rescore_every and epoch % rescore_every == 0:
        # Curriculum re-scored with the current model (instead of only the
        # warm-up model's embeddings); saved so a resumed run uses it too.
        pool.rescore(np.asarray(models.item_table(eval_params(state, ema))),
                     mesh)
        if is_chief():
          tmp = os.path.join(workdir, f".pool_order_e{epoch}.npy")
          np.save(tmp, pool.order)
          os.replace(tmp, os.path.join(workdir, f"pool_order_e{epoch}.npy"))
        logging.info("epoch %d: curriculum re-scored with the current model",
                     epoch)
      log.write(record, int(state["step"]))
      meta.update(epoch=epoch, train_seconds=train_seconds)
      if epoch == tc.num_epochs:
        meta["finished"] = True
      halt = stop.agreed(None) or (stop_after_epochs is not None and
                                   epoch >= stop_after_epochs)
      if meta["finished"] or halt or epoch % tc.checkpoint_every == 0:
        save(state, meta)
      if halt and not meta["finished"]:
        log.close()
        raise Interrupted(f"stopped after epoch {epoch}"
                          + (f" ({stop.name})" if stop.requested else ""),
                          stop.signum)
    return state, meta, epoch, train_seconds

  logging.info("training: %d rows, %d steps/epoch, up to %d epochs from "
               "epoch %d", len(rows), steps_per_epoch, tc.num_epochs,
               meta["epoch"] + 1)
  progress = {"lines": 0, "last": time.time(), "epoch": None, "step": 0}
  stop = _StopSignal()
  try:
    state, meta, epoch, train_seconds = epoch_loop(
        state, meta, meta["epoch"], meta["train_seconds"], stop)
  finally:
    stop.restore()

  # Final: the best-validation parameters on validation and test.
  if ckpt.best_step() is None:  # never evaluated (num_epochs < eval_every)
    ckpt.save_best(int(state["step"]), state, {"epoch": epoch})
    meta["best_epoch"] = epoch
  logging.info("phase: test (best-validation parameters)")
  best_state, best_meta = ckpt.restore_best(state)
  # A damaged newest best save falls back to the previous one (a warning
  # says so); report the epoch of the one evaluated.
  meta["best_epoch"] = best_meta.get("epoch", meta["best_epoch"])
  test_set = EvalSet.build(ds, "test", max_len)
  t_eval = time.time()
  best_params = eval_params(best_state, ema)
  valid = evaluate(eval_step, best_params, valid_set,
                   tc.eval_batch_size, eval_widths, mesh)
  test = evaluate(eval_step, best_params, test_set,
                  tc.eval_batch_size, eval_widths, mesh)
  eval_seconds = time.time() - t_eval
  logging.info("best epoch %d  valid %s", meta["best_epoch"],
               _fmt_metrics(valid))
  logging.info("best epoch %d  test  %s", meta["best_epoch"],
               _fmt_metrics(test))
  log.write({"epoch": epoch, "final": True,
             **{f"best_valid/{k}": v for k, v in valid.items()},
             **{f"test/{k}": v for k, v in test.items()}},
            int(state["step"]))
  log.close()
  ckpt.close()
  return {
      "best_epoch": meta["best_epoch"],
      "epochs_run": epoch,
      "valid": valid,
      "test": test,
      "train_seconds": round(train_seconds, 2),
      "final_eval_seconds": round(eval_seconds, 2),
      "wall_seconds_this_process": round(time.time() - t0, 2),
  }


class _StopSignal:
  """SIGTERM/SIGINT set a flag; the loop saves a checkpoint and exits.

  TPU VMs and most schedulers announce preemption with SIGTERM. A second
  signal falls through to the previous handler. With several processes the
  hosts must stop at the same step (saving is collective), so `agreed`
  all-gathers the flags every `SYNC_EVERY` steps and at epoch ends, at the
  same points on every process.
  """
  SYNC_EVERY = 20

  def __init__(self):
    self.requested = False
    self.name = ""
    self.signum = None
    self._old = {}
    if threading.current_thread() is not threading.main_thread():
      return
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._old[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    if self.requested:      # second signal: default behaviour
      self.restore()
      signal.raise_signal(signum)
      return
    self.requested = True
    self.signum = signum
    self.name = signal.Signals(signum).name
    logging.warning("%s received: saving a checkpoint and stopping",
                    self.name)

  def agreed(self, batches_done: Optional[int]) -> bool:
    """Whether to stop now: this process's flag, or any process's.

    Args:
      batches_done: batches done in this epoch, or None at an epoch end.
    """
    if jax.process_count() == 1:
      return self.requested
    if batches_done is not None and batches_done % self.SYNC_EVERY:
      return False
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    flags = multihost_utils.process_allgather(np.int32(self.requested))
    if np.any(flags) and not self.requested:
      self.requested, self.name = True, "stop on another host"
      self.signum = signal.SIGTERM
    return bool(np.any(flags))

  def restore(self):
    for sig, old in self._old.items():
      signal.signal(sig, old)
    self._old = {}


def _check_finite(losses, state, ckpt) -> None:
  """Stops the run at the first non-finite loss, naming the step.

  `losses` are the device scalars of the last len(losses) steps; one host
  transfer for all of them. The state is not saved, so the latest
  checkpoint stays the last good one.
  """
  if not losses:
    return
  values = np.asarray(jax.device_get(jnp.stack(losses)))
  bad = np.flatnonzero(~np.isfinite(values))
  if bad.size:
    step = int(state["step"]) - len(losses) + int(bad[0]) + 1
    last = ckpt.latest_step()
    kept = (f"The last good checkpoint (step {last}) is kept in "
            f"{ckpt.directory}" if last is not None else
            "No checkpoint was saved before it (a rerun starts over)")
    raise FloatingPointError(
        f"loss is {values[bad[0]]} at step {step}; stopping. {kept}; lower "
        "train.lr or check the data.")


def _restore_pool_order(pool, workdir: str, epoch: int) -> None:
  """Loads the newest re-scored curriculum order saved at or before `epoch`."""
  saved = []
  for f in os.listdir(workdir):
    if f.startswith("pool_order_e") and f.endswith(".npy"):
      e = int(f[len("pool_order_e"):-len(".npy")])
      if e <= epoch:
        saved.append(e)
  if saved:
    pool.order = np.load(os.path.join(workdir, f"pool_order_e{max(saved)}.npy"))
    logging.info("curriculum order re-scored at epoch %d restored",
                 max(saved))


def _fmt_secs(s: float) -> str:
  s = int(s)
  return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"


def _fmt_metrics(m: dict) -> str:
  return " ".join(f"{k} {v:.4f}" for k, v in m.items())


# ----------------------------------------------------------------------------
# Augmentation (modes 'aug' and 'diff4rec')
# ----------------------------------------------------------------------------
AUGMENTED_FILE = "augmented.npz"


def pacing_steps(config, steps_per_epoch: int) -> int:
  """Steps the curriculum's pacing function is laid over (its clock).

  `augment.pacing_epochs` epochs, or all `train.num_epochs` when it is 0.
  With early stopping a run often ends long before num_epochs, so a
  pacing laid over num_epochs may never admit the hard end of the pool.
  """
  return steps_per_epoch * (config.augment.pacing_epochs
                            or config.train.num_epochs)


def aug_batch_size(config, mesh) -> int:
  """Copies per step: copies_per_batch x batch, a multiple of the devices."""
  a = int(round(config.augment.copies_per_batch * config.train.batch_size))
  return sharding.round_up(max(1, a), mesh)


@dataclasses.dataclass
class AugmentPool:
  """All U x K augmented copies and their curriculum order.

  copies: [P, L] int32 flat pool (row u * K + r is copy r of user u).
  order: [P] int32 pool indices, easy to hard (similarity descending); the
    'aug' mode ("w/o cur") admits the whole pool from the first step.
  widths: sorted batch widths (the last = L) to cut copies to, like the
    originals' length buckets: each step's copies come from one width
    bucket (`draw`). None: every copy at width L.
  """
  copies: np.ndarray
  order: np.ndarray
  augment_config: ml_collections.ConfigDict
  mode: str
  seed: int
  orig: Optional[np.ndarray] = None    # [U, L] originals (for re-scoring)
  widths: Optional[np.ndarray] = None
  _strata_of: Any = dataclasses.field(default=None, repr=False)

  def rescore(self, item_emb, mesh) -> None:
    """Re-sorts the pool by Eq. 11 with new item embeddings [N + 1, D]."""
    u, l = self.orig.shape
    copies = self.copies.reshape(u, -1, l)
    sim = curriculum.similarity_all(item_emb, self.orig, copies,
                                    batch_size=self.augment_config.batch_size,
                                    mesh=mesh)
    self.order = curriculum.pool_order(
        sim, self.augment_config.curriculum_scope,
        self.augment_config.curriculum_direction)

  def admitted(self, step: int, pace_steps: int) -> int:
    """Copies admitted at `step` of a curriculum laid over `pace_steps`."""
    p = step / max(1, pace_steps)
    return int(curriculum.admitted_count_from_config(
        p, len(self.order), self.augment_config, self.mode))

  def _strata(self):
    """(widths [S], positions: per width, the ascending positions in `order`
    of the copies it is the narrowest width for, pass: the 'pop' schedule's
    steps as (stratum, first position index) in curriculum order)."""
    if self._strata_of is None or self._strata_of[0] is not self.order:
      width = self.copies.shape[1]
      widths = (np.asarray(self.widths) if self.widths is not None
                else np.array([width]))
      pairs = np.maximum((self.copies > 0).sum(axis=1) - 1, 1)
      stratum = np.searchsorted(widths, pairs)[self.order]
      positions = [np.flatnonzero(stratum == s) for s in range(len(widths))]
      self._strata_of = (self.order, widths, positions)
    return self._strata_of[1:3]

  def pass_steps(self, num: int) -> list:
    """Schedule 'pop' (Algorithm 1, line 18: each copy is taken once, easiest
    first): the first pass as a list of (stratum, start); step s < its
    length takes the `num` copies of its stratum from `start` on, in
    curriculum order. Chunks of all strata are merged by the curriculum
    position of their first copy."""
    _, positions = self._strata()
    cached = self._strata_of[3:] if len(self._strata_of) > 3 else None
    if cached and cached[0] == num:
      return cached[1]
    chunks = [(int(p[j]), s, j) for s, p in enumerate(positions)
              for j in range(0, len(p), num)]
    steps = [(s, j) for _, s, j in sorted(chunks)]
    self._strata_of = self._strata_of[:3] + (num, steps)
    return steps

  def draw(self, step: int, pace_steps: int, num: int,
           local: slice = slice(None)) -> dict:
    """A fixed-size batch of copies from the admitted part of the pool.

    Schedule 'paced' (default): `num` copies drawn uniformly with
    replacement from the admitted part; with `widths`, first a width
    stratum with probability proportional to its admitted copies, then the
    copies within it (so each admitted copy is equally likely, as before)
    and the batch is cut to that width. Schedule 'pop': one pass through
    the whole pool in curriculum order (`pass_steps`), then as 'paced'
    with everything admitted.

    Host-side, a function of (seed, step) only, so a resumed run (and every
    process) draws the same copies. Returns next-item pairs
    {'aug_inputs', 'aug_targets'} [num, W] int32, or only their `local`
    rows.
    """
    widths, positions = self._strata()
    rng = np.random.default_rng([self.seed, 7, step])
    pop = self.augment_config.get("schedule", "paced") == "pop"
    first_pass = self.pass_steps(num) if pop else []
    if step < len(first_pass):
      s, j = first_pass[step]
      p = positions[s]
      sel = p[(j + np.arange(num)) % len(p)]
    else:
      n = (len(self.order) if pop else self.admitted(step, pace_steps))
      counts = np.array([np.searchsorted(p, n) for p in positions])
      s = 0 if len(positions) == 1 else int(
          rng.choice(len(positions), p=counts / counts.sum()))
      sel = positions[s][rng.integers(0, counts[s], num)]
    idx = self.order[sel][local]
    inputs, targets = augment.shift_pairs(self.copies[idx])
    w = int(widths[s])
    return {"aug_inputs": inputs[:, -w:], "aug_targets": targets[:, -w:]}


def _phase_config(config, **train_overrides):
  c = config.copy_and_resolve_references()
  c.mode = "base"
  for k, v in train_overrides.items():
    c.train[k] = v
  return c


def restore_best_params(config, ds, phase_dir: str):
  """(params, meta) of the best checkpoint of a recommender run (its
  parameter average when the run had `train.ema_decay` > 0)."""
  model = models.get_model(config.model, ds.num_items, config.data.max_len)
  target = init_state(model, make_optimizer(config.train), jax.random.key(0),
                      config.data.max_len)
  ckpt = checkpointing.Checkpointer(os.path.join(phase_dir, "ckpt",
                                                 "recommender"))
  try:
    state, meta = ckpt.restore_best(target)
  finally:
    ckpt.close()
  return eval_params(state, config.train.get("ema_decay", 0.0)), meta


def best_item_table(config, ds, phase_dir: str) -> np.ndarray:
  """Item embeddings [N + 1, D] of the best checkpoint of a recommender run."""
  params, _ = restore_best_params(config, ds, phase_dir)
  return np.asarray(models.item_table(params))


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
    write_json(os.path.join(wd, "results.json"), res)
  return best_item_table(wc, ds, wd)


def _augment_hash(config, ds) -> str:
  # Only the settings that change the copies or their similarities: the
  # pacing, loss weight, re-scoring etc. may differ between runs sharing it.
  a = config.augment
  pool_fields = ("num_copies", "candidates", "exclude_history",
                 "copy_source", "ratio", "top_m", "temperature", "reorder",
                 "similarity_source", "similarity_checkpoint", "warmup_epochs")
  keys = {"seed": config.seed, "data": ds.name, "max_len": config.data.max_len,
          "augment": {f: a[f] for f in pool_fields},
          "generator": (config.generator.to_dict()
                        if a.candidates == "generator" else None),
          "model": (
              config.model.to_dict() if config.augment.similarity_source ==
              "warmup" else None)}
  if a.curriculum_scope != "global":   # the export's `rank` follows it
    keys["curriculum_scope"] = a.curriculum_scope
  if a.curriculum_direction != "easy_first":
    keys["curriculum_direction"] = a.curriculum_direction
  return hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()


def build_pool(config, ds, workdir: str) -> AugmentPool:
  """Generator -> top-M -> K copies per user -> similarities -> order.

  Every step is resumable: the generator phase resumes from its checkpoint
  or reuses its top-M file; the copies and similarities are saved to
  `workdir/augmented.npz` and reused when the config matches.

  `augmented.npz` (an export other tools can read with numpy.load):
    copies [U, K, L] int32  augmented training sequences, left-padded
    orig   [U, L] int32     the original training sequence S_u
    sim    [U, K] float32   Sim_{u,r} of Eq. 11 (cosine of mean embeddings)
    rank   [U, K] int32     curriculum position (0 = first admitted: the
                            most similar, or the least with 'hard_first')
    user_ids [U] int64      dataset user ids of the rows
    config_hash             hash of the settings that made the file
  """
  a = config.augment
  path = os.path.join(workdir, AUGMENTED_FILE)
  chash = _augment_hash(config, ds)
  if os.path.exists(path):
    with np.load(path) as z:
      if str(z["config_hash"]) == chash:
        logging.info("augmentation: reusing %s", path)
        return _pool(config, z["copies"], z["sim"], z["orig"])
  if a.candidates == "generator":
    logging.info("phase: generator")
    topm_path = generator.run_generator_phase(
        config, ds, os.path.join(workdir, "generator"))
    topm = generator.load_topm(topm_path)
    cand, prob = topm["items"], topm["probs"]
    if len(cand) != ds.num_users:
      raise errors.UserError(f"{topm_path}: {len(cand)} rows for "
                             f"{ds.num_users} users; delete it to regenerate")
  else:
    logging.info("phase: %s candidates (control, no generator)",
                 a.candidates)
    indptr, hist = generator.train_rows(ds)
    _, train_pos = data_lib.row_ranges(ds.indptr[:-1], ds.split_end("train"))
    counts = candidates.item_counts(ds.items[train_pos], ds.num_items)
    cand, prob = candidates.control_topm(a.candidates, indptr, hist, counts,
                                         a.top_m, config.seed,
                                         a.exclude_history)
  item_emb = similarity_embeddings(config, ds, workdir)
  t = time.time()
  logging.info("phase: augmentation (%d users x %d copies)", ds.num_users,
               a.num_copies)
  max_len = config.data.max_len
  end = ds.split_end("train")
  seqs = data_lib.left_pad(ds.items, ds.indptr[:-1], end, max_len)
  lengths = np.minimum(end - ds.indptr[:-1], max_len)
  key = jax.random.fold_in(jax.random.key(config.seed), 11)
  mesh = sharding.make_mesh()
  # copy_source 'prefix': each copy is made from the whole training prefix
  # (n = ratio x its length), then cut to its newest max_len items.
  src, src_len = seqs, lengths
  prefix_len = end - ds.indptr[:-1]
  if a.copy_source == "prefix" and prefix_len.max() > max_len:
    width = int(prefix_len.max())
    src = data_lib.left_pad(ds.items, ds.indptr[:-1], end, width)
    src_len = np.minimum(prefix_len, width)
  copies = augment.augment_all(
      key, src, src_len, cand, prob, num_copies=a.num_copies,
      ratio=a.ratio, temperature=a.temperature, reorder=a.reorder,
      batch_size=a.batch_size, mesh=mesh,
      exclude_history=a.exclude_history)
  if copies.shape[2] > max_len:
    copies = np.ascontiguousarray(copies[:, :, -max_len:])
  sim = curriculum.similarity_all(item_emb, seqs, copies, lengths,
                                  batch_size=a.batch_size, mesh=mesh)
  order = curriculum.pool_order(sim, a.curriculum_scope,
                                a.curriculum_direction)
  rank = np.empty(order.size, np.int32)
  rank[order] = np.arange(order.size, dtype=np.int32)
  logging.info("augmentation: %d users x %d copies in %.1fs; similarity "
               "mean %.3f (min %.3f, max %.3f)", ds.num_users, a.num_copies,
               time.time() - t, float(sim.mean()), float(sim.min()),
               float(sim.max()))
  if is_chief():
    tmp = path + ".tmp.npz"
    np.savez(tmp, copies=copies, orig=seqs, sim=sim,
             rank=rank.reshape(sim.shape), user_ids=ds.user_ids,
             config_hash=np.array(chash))
    os.replace(tmp, path)
  return _pool(config, copies, sim, seqs, order)


def _pool(config, copies, sim, orig=None, order=None) -> AugmentPool:
  """The training pool; `order`: `curriculum.pool_order(sim, scope,
  direction)` if already computed (diff4rec mode only)."""
  u, k, l = copies.shape
  if config.mode == "diff4rec":
    if order is None:
      order = curriculum.pool_order(sim, config.augment.curriculum_scope,
                                    config.augment.curriculum_direction)
  elif config.augment.get("schedule", "paced") == "pop":
    # 'aug' with one pass: the pass goes through the pool in random order.
    order = np.random.default_rng([config.seed, 17]).permutation(
        u * k).astype(np.int32)
  else:  # 'aug': every copy admitted from the start, order irrelevant
    order = np.arange(u * k, dtype=np.int32)
  widths = (bucket_widths(config)
             if config.augment.get("bucket_copies", True) else None)
  return AugmentPool(copies=copies.reshape(u * k, l), order=order,
                     augment_config=config.augment, mode=config.mode,
                     seed=config.seed, orig=orig, widths=widths)


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
  ds = data_lib.load(config.data)
  rundir.check_data(workdir, ds, write=is_chief())
  done = os.path.join(workdir, "results.json")
  if os.path.exists(done):
    with open(done) as f:
      stored = json.load(f)
    logging.info("workdir %s is finished (%s); nothing to run. Its results: "
                 "best epoch %s, valid %s, test %s", workdir, done,
                 stored.get("best_epoch"), _fmt_metrics(stored["valid"]),
                 _fmt_metrics(stored["test"]))
    return stored
  # Only a start whose config and data are accepted marks the workdir: a
  # failed start leaves it as it was, so the corrected command is not
  # refused as "a different config".
  os.makedirs(workdir, exist_ok=True)
  write_json(os.path.join(workdir, "config.json"), config.to_dict())
  pool = None
  if config.mode in ("aug", "diff4rec"):
    pool = build_pool(config, ds, workdir)
  logging.info("phase: recommender (%s, %s mode)", config.model.name,
               config.mode)
  results = train_recommender(config, ds, workdir,
                              stop_after_epochs=stop_after_epochs, pool=pool)
  results.update({
      "config": config.to_dict(),
      "dataset": {"name": ds.name, "source": ds.source, **ds.stats()},
      "devices": [str(d) for d in jax.devices()],
      "wall_seconds_this_process": round(time.time() - t0, 2),
  })
  write_json(os.path.join(workdir, "results.json"), results)
  return results
