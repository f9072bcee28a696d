"""Jitted recommender steps: optimizer, EMA, losses, micro-batching.

Only step builders and the pure functions they compile: `make_train_step`
returns `train_step(state, batch, rng) -> (state, metrics)` (state donated,
the RNG folded with the step), `make_eval_step` returns `eval_step(params,
sums, batch) -> sums`. No host loop, no files.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diff4rec_jax import errors
from diff4rec_jax import losses
from diff4rec_jax import metrics as metrics_lib
from diff4rec_jax import models
from diff4rec_jax import sharding


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


def loss_token_norm(targets, rows, steps_per_epoch: int) -> float:
  """Mean count of target positions per batch over an epoch
  (`train.loss_norm='epoch'`): targets [U, L] int32 (0 = none), `rows` the
  users trained on. With length buckets a short-bucket batch holds a
  fraction of a long one's targets; dividing every batch by this constant
  instead of its own count gives each target position the same weight, as
  random batches at full width do on average.
  """
  return float((targets[rows] > 0).sum()) / max(steps_per_epoch, 1)
