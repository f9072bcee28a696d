"""Next-item training losses over hidden states and the shared item table.

* `ce_loss`: full-softmax cross-entropy over all N items at every position
  with a target (the strong setting of the SASRec+ studies).
* `bce_loss`: the original SASRec binary cross-entropy with one sampled
  negative per position (the paper's setting).
* `sampled_ce_loss`: softmax over the target and S negatives shared by the
  batch (`sample_shared_negatives`: uniform, or by popularity with the logQ
  correction). Costs O(B L S D) instead of full CE's O(B L N D): the loss
  for catalogs far larger than a batch.

Both return (sum of per-position losses, number of positions) so callers can
combine original and augmented sequences with their own weights.
"""

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp


class SampledSoftmax(NamedTuple):
  """Negatives of the sampled softmax: S per batch, uniform (log_q None) or
  from [N + 1] log probabilities (logQ-corrected)."""
  num_negatives: int = 1024
  log_q: Optional[jax.Array] = None


def ce_loss(hidden, table, targets, dtype="float32"):
  """Full-softmax CE.

  Args:
    hidden: [B, L, D] float.
    table: [N + 1, D] item embeddings (row 0 = padding, never a class).
    targets: [B, L] int32, 0 where a position has no target.
    dtype: operands of the [B*L, D] x [D, N] logits product ('bfloat16':
      hidden and table rounded to it, float32 accumulation; the target
      logit uses the same rounded values).
  Returns:
    (loss_sum, count) float32 scalars.
  """
  # Classes are items 1..N; the padding row never enters the softmax. The
  # target logit is a [B, L, D] gather, not a gather from [B, L, N] logits
  # (whose gradient would be a scatter into the logits).
  b, l, d = hidden.shape
  cdt = jnp.dtype(dtype)
  hidden, table = hidden.astype(cdt), table.astype(cdt)
  logits = jnp.dot(hidden.reshape(b * l, d), table[1:].T,
                   preferred_element_type=jnp.float32)          # [B*L, N]
  lse = jax.nn.logsumexp(logits, axis=-1).reshape(b, l)
  tgt = jnp.sum(hidden.astype(jnp.float32)
                * table[targets].astype(jnp.float32), axis=-1)
  w = (targets > 0).astype(jnp.float32)
  return jnp.sum((lse - tgt) * w), jnp.sum(w)


def sample_negatives(rng, seen, num_items, shape, rounds: int = 3):
  """Uniform negatives in 1..N, resampled where they hit a `seen` item.

  Args:
    rng: PRNG key.
    seen: [B, S] int32 items of each row to avoid (0 = pad).
    num_items: N.
    shape: (B, L) output shape.
    rounds: resampling rounds; after them a rare collision is kept (the
      chance is (|seen| / N) ** (rounds + 1)).
  Returns:
    [B, L] int32 negatives.
  """
  keys = jax.random.split(rng, rounds + 1)
  neg = jax.random.randint(keys[0], shape, 1, num_items + 1)
  for k in keys[1:]:
    hit = jnp.any(neg[..., None] == seen[:, None, :], axis=-1)
    neg = jnp.where(hit, jax.random.randint(k, shape, 1, num_items + 1), neg)
  return neg


def bce_loss(hidden, table, targets, negatives):
  """SASRec BCE: -log s(pos) - log(1 - s(neg)) at positions with a target.

  Args:
    hidden: [B, L, D]; table: [N + 1, D]; targets, negatives: [B, L] int32.
  Returns:
    (loss_sum, count); the count is of positions (one pos + one neg each).
  """
  pos = jnp.sum(hidden * table[targets], axis=-1)
  neg = jnp.sum(hidden * table[negatives], axis=-1)
  w = (targets > 0).astype(jnp.float32)
  per = -jax.nn.log_sigmoid(pos) - jax.nn.log_sigmoid(-neg)
  return jnp.sum(per * w), jnp.sum(w)


def sample_shared_negatives(rng, num: int, num_items: int, log_q=None):
  """S negatives for a whole batch, with replacement.

  Args:
    rng: PRNG key.
    num: S.
    num_items: N (items 1..N).
    log_q: None (uniform over 1..N) or [N + 1] float32 log sampling
      probabilities (entry 0 = -inf): drawn by inverse CDF, O(S log N).
  Returns:
    [S] int32 item ids.
  """
  if log_q is None:
    return jax.random.randint(rng, (num,), 1, num_items + 1)
  cdf = jnp.cumsum(jnp.exp(log_q))
  u = jax.random.uniform(rng, (num,), maxval=cdf[-1])
  return jnp.clip(jnp.searchsorted(cdf, u, side="right"), 1,
                  num_items).astype(jnp.int32)


def sampled_ce_loss(hidden, table, targets, negatives, log_q=None):
  """Sampled softmax CE: each target against the batch's S negatives.

  Logits are corrected by -log q(item) when `log_q` is given (the logQ
  correction, Bengio & Senecal; Yi et al. 2019), which makes the sampled
  softmax an unbiased-in-the-limit estimate of full CE under a non-uniform
  sampler; under uniform sampling the correction is a constant and is
  skipped. A negative equal to a position's target (an accidental hit) is
  left out of that position's softmax.

  Args:
    hidden: [B, L, D]; table: [N + 1, D]; targets: [B, L] int32 (0 = none).
    negatives: [S] int32 shared negatives.
    log_q: None or [N + 1] float32 log sampling probabilities.
  Returns:
    (loss_sum, count) float32 scalars.
  """
  b, l, d = hidden.shape
  h = hidden.reshape(b * l, d)
  t = targets.reshape(b * l)
  pos = jnp.sum(h * table[t], axis=-1)                         # [B*L]
  neg = jnp.dot(h, table[negatives].T)                         # [B*L, S]
  if log_q is not None:
    pos = pos - jnp.where(t > 0, log_q[t], 0.0)   # log_q[0] = -inf
    neg = neg - log_q[negatives][None, :]
  neg = jnp.where(negatives[None, :] == t[:, None], -jnp.inf, neg)
  lse = jnp.logaddexp(pos, jax.nn.logsumexp(neg, axis=-1))
  w = t > 0
  return (jnp.sum(jnp.where(w, lse - pos, 0.0)),
          jnp.sum(w.astype(jnp.float32)))


def popularity_log_q(counts, power: float = 1.0):
  """[N + 1] log sampling probabilities ~ (count + 1) ** power, entry 0 -inf.

  counts: [N + 1] training occurrences (entry 0 ignored). The +1 keeps every
  item drawable.
  """
  w = (jnp.asarray(counts, jnp.float32) + 1.0) ** power
  w = w.at[0].set(0.0)
  return jnp.log(w / jnp.sum(w))
