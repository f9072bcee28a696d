"""Next-item training losses over hidden states and the shared item table.

* `ce_loss`: full-softmax cross-entropy over all N items at every position
  with a target (the strong setting of the SASRec+ studies).
* `bce_loss`: the original SASRec binary cross-entropy with one sampled
  negative per position (the paper's setting).

Both return (sum of per-position losses, number of positions) so callers can
combine original and augmented sequences with their own weights.
"""

import jax
import jax.numpy as jnp


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
