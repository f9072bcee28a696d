"""Top-k unseen items and candidate scores from a recommender's states.

Array functions only (no files, no configs): the serving counterpart of
`metrics.target_ranks`. Items are scored against the whole item table in
fixed-size chunks inside one `lax.scan` that carries the running top k, so
memory is O(batch x (chunk + k)) whatever the number of items, and every
shape is static (one compile per batch shape).

Scores are the recommender's logits: hidden state . item embedding, the
quantity its training loss ranks by. Item 0 (padding), ids above N and the
items set in a row's `seen` bitset (`metrics.history_words`) are never
returned; a row with fewer than k allowed items ends in score -inf, item 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diff4rec_jax import metrics as metrics_lib


def top_k_unseen(hidden: jax.Array, table: jax.Array,
                 seen_words: jax.Array | None, num_items: int, k: int,
                 chunk: int):
  """The k highest-scoring allowed items of each row.

  Args:
    hidden: [B, D] user states (the model's output at the newest position).
    table: [N + 1, D] item embeddings (row 0 = padding).
    seen_words: [B, W] uint32 bitset of items to exclude (W =
      metrics.num_words(N)), or None to exclude only padding.
    num_items: N.
    k: items per row (static), 1 <= k.
    chunk: C, items scored at once (a multiple of 32).
  Returns:
    (scores [B, k] float32 descending, items [B, k] int32); ties go to the
    smaller item id.
  """
  if chunk % 32:
    raise ValueError(f"item chunk must be a multiple of 32, got {chunk}")
  b = hidden.shape[0]
  n_pad = metrics_lib.padded_num_items(num_items, chunk)
  table = jnp.pad(table, ((0, n_pad - table.shape[0]), (0, 0)))
  hidden = hidden.astype(jnp.float32)
  words = (jnp.pad(seen_words,
                   ((0, 0), (0, n_pad // 32 - seen_words.shape[1])))
           if seen_words is not None else None)
  lane = jnp.arange(chunk, dtype=jnp.int32)

  def body(carry, c):
    best_s, best_i = carry                                      # [B, k]
    start = c * chunk
    tab = jax.lax.dynamic_slice_in_dim(table, start, chunk, axis=0)
    s = hidden @ tab.astype(jnp.float32).T                      # [B, C]
    ids = start + lane
    ok = jnp.broadcast_to(((ids >= 1) & (ids <= num_items))[None, :],
                          (b, chunk))
    if words is not None:
      w = jax.lax.dynamic_slice_in_dim(words, start // 32, chunk // 32, 1)
      bits = jnp.right_shift(w[:, :, None],
                             jnp.arange(32, dtype=jnp.uint32)) & 1
      ok = ok & (bits.reshape(b, chunk) == 0)
    s = jnp.where(ok, s, -jnp.inf)
    cat_s = jnp.concatenate([best_s, s], axis=1)                # [B, k + C]
    cat_i = jnp.concatenate(
        [best_i, jnp.broadcast_to(jnp.where(ok, ids, 0), (b, chunk))], 1)
    top_s, pos = jax.lax.top_k(cat_s, k)
    return (top_s, jnp.take_along_axis(cat_i, pos, axis=1)), None

  init = (jnp.full((b, k), -jnp.inf, jnp.float32), jnp.zeros((b, k),
                                                             jnp.int32))
  (scores, items), _ = jax.lax.scan(body, init, jnp.arange(n_pad // chunk))
  return scores, jnp.where(jnp.isfinite(scores), items, 0)


def candidate_scores(hidden: jax.Array, table: jax.Array,
                     candidates: jax.Array) -> jax.Array:
  """Scores [B, C] float32 of candidate items [B, C] int32 (0 = padding,
  scored -inf) for user states hidden [B, D]."""
  emb = table[candidates].astype(jnp.float32)                   # [B, C, D]
  s = jnp.einsum("bd,bcd->bc", hidden.astype(jnp.float32), emb)
  return jnp.where(candidates > 0, s, -jnp.inf)
