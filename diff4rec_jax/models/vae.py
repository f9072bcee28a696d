"""The interaction VAE of the generator (paper section 3.2.1, Eq. 1-2).

A Mult-VAE (Liang et al., 2018) over a user's interaction row x_u:

* encoder: x_u -> (mu, logvar) of q(z | x) (Eq. 1). The first layer is an
  *embedding bag*: the sum of the kernel rows of the user's items. A batch
  of B rows is a flat bag: ids [P] (0 = padding) and seg [P] (the row of
  each entry), so the layer costs O(P x hidden) = O(nnz x hidden) however
  long the longest row is; a padded [B, H] batch is the special case
  `padded_to_flat`. No dense row is built. Mult-VAE's input treatment
  (L2-normalize the binary row, then dropout) becomes: weight each present
  item by 1/sqrt(count), drop items with probability `dropout`, scale
  survivors by 1/(1 - dropout). `encoder_input='dense'` computes the same
  thing through on-the-fly [B, num_items + 1] multi-hot rows (a check of the
  bag, and the faster choice when rows are dense, e.g. ML-1M).
* decoder: z -> logits over all items `[B, num_items + 1]`; column 0 (the
  padding id) is masked to a large negative value.
* losses: the multinomial negative log-likelihood of x_u under
  softmax(logits), read from the same flat bag, and the KL to N(0, I).
  `kl_beta` is the KL annealing weight (a ramp to a cap).
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from diff4rec_jax.models.denoiser import ACTIVATIONS

# Logit of the padding column; exp() of it is exactly 0 in float32.
NEG = -1e9


def padded_to_flat(ids: jax.Array):
  """A padded [B, H] id batch as the flat bag layout: (ids [B*H], seg [B*H])."""
  b, h = ids.shape
  return ids.reshape(-1), jnp.repeat(jnp.arange(b, dtype=jnp.int32), h)


def bag_weights(ids: jax.Array, seg: jax.Array, num_rows: int, rate: float,
                rng: Optional[jax.Array]) -> jax.Array:
  """Per-entry input weights: Mult-VAE's normalize-then-dropout on a bag.

  Args:
    ids: [P] int32 item ids, 0 = padding (ids unique within a row).
    seg: [P] int32 row of each entry, in 0..num_rows-1.
    num_rows: B.
    rate: dropout rate in [0, 1).
    rng: dropout key; None for no dropout (evaluation).
  Returns:
    [P] float32: 1/sqrt(n_u) on kept items (times 1/(1-rate) when dropping),
    0 on padding and dropped items. n_u counts the row's non-padding ids.
  """
  present = (ids > 0).astype(jnp.float32)
  count = jax.ops.segment_sum(present, seg, num_rows)  # [B]
  w = present * jax.lax.rsqrt(jnp.maximum(count, 1.0))[seg]
  if rng is not None and rate > 0:
    keep = jax.random.bernoulli(rng, 1.0 - rate, ids.shape)
    w = jnp.where(keep, w / (1.0 - rate), 0.0)
  return w


def embed_bag(kernel: jax.Array, ids: jax.Array, seg: jax.Array,
              w: jax.Array, num_rows: int, chunk: int = 0) -> jax.Array:
  """out[b] = sum_{p : seg[p] = b} w[p] * kernel[ids[p]]: the bag layer.

  Costs O(P x D) for P entries, whatever the row lengths. With `chunk` > 0
  the entries are consumed `chunk` at a time in a `lax.scan`, bounding the
  gathered rows to [chunk, D] in memory.

  Args:
    kernel: [N + 1, D] first-layer weights, row = item id.
    ids: [P] int32.
    seg: [P] int32 row of each entry.
    w: [P] float32 weights (0 on padding).
    num_rows: B.
    chunk: entries per scan step (0: all at once).
  Returns:
    [B, D].
  """
  p = ids.shape[0]
  if chunk <= 0 or p <= chunk:
    return jax.ops.segment_sum(w[:, None] * kernel[ids], seg, num_rows)
  n = -(-p // chunk)
  pad = n * chunk - p
  ids = jnp.pad(ids, (0, pad)).reshape(n, chunk)
  seg = jnp.pad(seg, (0, pad)).reshape(n, chunk)
  w = jnp.pad(w, (0, pad)).reshape(n, chunk)

  def body(acc, xs):
    i, s, ww = xs
    return acc.at[s].add(ww[:, None] * kernel[i]), None

  acc0 = jnp.zeros((num_rows, kernel.shape[1]), kernel.dtype)
  acc, _ = jax.lax.scan(body, acc0, (ids, seg, w))
  return acc


def multi_hot(ids: jax.Array, seg: jax.Array, w: jax.Array, num_rows: int,
              num_items: int) -> jax.Array:
  """The dense rows: [B, N + 1] with w[p] added at (seg[p], ids[p])."""
  return jnp.zeros((num_rows, num_items + 1), w.dtype).at[seg, ids].add(w)


def embed_dense(kernel: jax.Array, ids: jax.Array, seg: jax.Array,
                w: jax.Array, num_rows: int) -> jax.Array:
  """Same as `embed_bag` through dense [B, N + 1] rows. [B, D]."""
  return multi_hot(ids, seg, w, num_rows, kernel.shape[0] - 1) @ kernel


def multinomial_nll(logits: jax.Array, ids: jax.Array,
                    seg: jax.Array) -> jax.Array:
  """-sum_{i in x_u} log softmax(logits_u)_i for each row (Mult-VAE). [B].

  Args:
    logits: [B, N + 1] (column 0 masked).
    ids: [P] the rows' items, 0 = padding, unique within a row (so x_u is
      the binary row Mult-VAE uses).
    seg: [P] row of each entry.
  """
  logp = jax.nn.log_softmax(logits, axis=-1)
  picked = jnp.where(ids > 0, logp[seg, ids], 0.0)  # [P]
  return -jax.ops.segment_sum(picked, seg, logits.shape[0])


def kl_divergence(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mu, exp(logvar)) || N(0, I)) per row. [B]."""
  return -0.5 * jnp.sum(1.0 + logvar - jnp.square(mu) - jnp.exp(logvar),
                        axis=-1)


def kl_beta(step: jax.Array, cap: float, anneal_steps: int) -> jax.Array:
  """KL weight min(cap, step / anneal_steps); `cap` at once if steps == 0."""
  if anneal_steps <= 0:
    return jnp.asarray(cap, jnp.float32)
  return jnp.minimum(jnp.asarray(cap, jnp.float32),
                     step.astype(jnp.float32) / anneal_steps)


class MultVAE(nn.Module):
  """Encoder (bag or dense first layer) and decoder of the generator.

  Attributes:
    num_items: N; item ids are 1..N, outputs have N + 1 columns.
    latent_size: size of z.
    encoder_hidden: hidden widths of the encoder; the first one is the bag.
      Empty: the bag outputs [mu, logvar] directly.
    decoder_hidden: hidden widths of the decoder (empty: one linear layer).
    act: activation between layers (not on mu/logvar nor logits).
    dropout: input dropout rate (items dropped from the bag).
    encoder_input: 'bag' or 'dense'.
    bag_chunk: bag entries per scan step in `embed_bag` (0: all at once).
  """
  num_items: int
  latent_size: int = 64
  encoder_hidden: Sequence[int] = (300,)
  decoder_hidden: Sequence[int] = ()
  act: str = "tanh"
  dropout: float = 0.5
  encoder_input: str = "bag"
  bag_chunk: int = 4096

  def setup(self):
    init = nn.initializers.xavier_normal()
    widths = list(self.encoder_hidden) + [2 * self.latent_size]
    self.bag_kernel = self.param("bag_kernel", init,
                                 (self.num_items + 1, widths[0]))
    self.bag_bias = self.param("bag_bias", nn.initializers.zeros, (widths[0],))
    self.enc_layers = [nn.Dense(w, kernel_init=init) for w in widths[1:]]
    self.dec_layers = [nn.Dense(w, kernel_init=init)
                       for w in self.decoder_hidden]
    self.out = nn.Dense(self.num_items + 1, kernel_init=init)

  def encode(self, ids: jax.Array, seg: jax.Array, num_rows: int,
             deterministic: bool = True):
    """A flat bag (ids [P], seg [P]) of B rows -> (mu [B, Z], logvar [B, Z]).

    Draws the 'dropout' rng when not deterministic.
    """
    rng = None if deterministic or self.dropout == 0 else self.make_rng(
        "dropout")
    w = bag_weights(ids, seg, num_rows, self.dropout, rng)
    if self.encoder_input == "dense":
      h = embed_dense(self.bag_kernel, ids, seg, w, num_rows)
    elif self.encoder_input == "bag":
      h = embed_bag(self.bag_kernel, ids, seg, w, num_rows, self.bag_chunk)
    else:
      raise ValueError(f"encoder_input: {self.encoder_input!r} is not one of "
                       "'bag', 'dense'")
    h = h + self.bag_bias
    act = ACTIVATIONS[self.act]
    for layer in self.enc_layers:
      h = layer(act(h))
    return h[:, :self.latent_size], h[:, self.latent_size:]

  def decode(self, z: jax.Array) -> jax.Array:
    """z [B, Z] -> logits [B, N + 1], column 0 = NEG."""
    act = ACTIVATIONS[self.act]
    h = z
    for layer in self.dec_layers:
      h = act(layer(h))
    logits = self.out(h)
    return logits.at[:, 0].set(NEG)

  def __call__(self, ids: jax.Array, deterministic: bool = True):
    """A padded batch ids [B, H] -> (logits of mu [B, N + 1], mu, logvar)."""
    flat, seg = padded_to_flat(ids)
    mu, logvar = self.encode(flat, seg, ids.shape[0], deterministic)
    return self.decode(mu), mu, logvar
