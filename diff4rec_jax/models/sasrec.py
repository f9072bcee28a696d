"""SASRec (Kang & McAuley, 2018): causal self-attention over item sequences.

Layout follows the reference implementation: item embedding (scaled by
sqrt(D)) + learned position embedding, dropout, then per block
`Q = LN(x); x = Q + MHA(Q, x, x); x = LN(x); x = x + FFN(x)`, padding zeroed
after every block, and a final layer norm. Attention masks both future
positions and padding keys, so the outputs at real positions do not depend on
how much left padding there is (positions are counted from the right end),
which lets evaluation and length-bucketed batches use narrower arrays.

`init_std` > 0 draws every dense kernel from N(0, init_std^2) with zero
biases, as the SASRec+ code (Klenitskiy & Vasilev, RecSys 2023) does with
0.02; 0 keeps flax's defaults (LeCun normal, std 1/sqrt(fan_in)).
Dropout masks come from `models/dropout.py` (`dropout_rng`: a fused
integer hash by default, or `jax.random.bernoulli`).
`attn_blocks` > 1 computes the causal attention in up to that many query
blocks of >= 32 positions, skipping the masked upper triangle (see
`SelfAttention`): the same outputs, less work on long sequences.
`dtype` = 'bfloat16' casts the operands of every product (dense layers,
attention logits and values) to bfloat16 and accumulates in float32;
parameters, layer norms, softmax and outputs stay float32, so the parameter
tree is the same as with 'float32' (results/log/speed.md: faster evaluation on
an AMX CPU, metrics within 0.0005).

Three switches follow the PyTorch SASRec ports (pmixer's, and the SASRec+
code built on it) where the original TF code and flax differ:
* `attn_dropout`: 'shared' drops the same (query, key) attention entries in
  every row and head of a batch (flax's `broadcast_dropout`); 'per_row'
  draws them for every row and head, as `torch.nn.MultiheadAttention` does.
* `qkv_init`: 'dense' draws the query/key/value kernels like the other dense
  kernels (`init_std`); 'torch' draws them as torch's packed [3D, D]
  in_proj weight: Xavier-uniform, bound sqrt(6 / 4D) (std ~0.088 at D = 64).
* `positions`: 'newest' counts positions from the right end (the newest
  item is max_len - 1, as the TF code's left-padded arrays); 'oldest'
  counts them from the first item of the row (0, 1, ...), as right-padded
  torch batches do.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from diff4rec_jax.models import dropout as dropout_lib

EMBED_INIT = nn.initializers.normal(stddev=0.02)
MIN_BLOCK = 32   # narrowest causal query block (`SASRec.attn_blocks`)
# Products accumulate and return float32 whatever the operands' dtype.
DOT_F32 = functools.partial(jax.lax.dot_general,
                            preferred_element_type=jnp.float32)


def mixed(dtype: str) -> dict:
  """Dense-layer arguments of a compute dtype: operands cast to `dtype`,
  float32 accumulation and outputs, float32 parameters."""
  return dict(dtype=jnp.dtype(dtype), dot_general=DOT_F32)


def kernel_init(init_std: float):
  """Dense kernel initializer: N(0, init_std^2), or LeCun normal if 0."""
  if init_std > 0:
    return nn.initializers.normal(stddev=init_std)
  return nn.initializers.lecun_normal()


class PointWiseFFN(nn.Module):
  hidden: int
  dropout: float
  init_std: float = 0.0
  dropout_rng: str = "hash"
  dtype: str = "float32"     # matmul operands (`SASRec.dtype`)

  @nn.compact
  def __call__(self, x, train: bool):
    init = kernel_init(self.init_std)
    drop = lambda y: dropout_lib.Dropout(self.dropout, self.dropout_rng)(
        y, deterministic=not train)
    mx = mixed(self.dtype)
    y = nn.Dense(self.hidden, kernel_init=init, name="fc1", **mx)(x)
    y = drop(nn.relu(y))
    y = nn.Dense(self.hidden, kernel_init=init, name="fc2", **mx)(y)
    y = drop(y)
    return x + y


class SelfAttention(nn.Module):
  """Multi-head attention with the parameters of flax's
  MultiHeadDotProductAttention (query/key/value/out DenseGeneral), computed
  with plain [B, H, Q, K] matmuls: fewer layout changes on CPU, and for one
  head no head axis at all.

  Attention dropout drops whole (query, key) entries shared across the batch
  and heads, as flax's default `broadcast_dropout` does.

  `causal_blocks` = n > 1 (only for a causal `mask` with Q = K): the queries
  are cut into n consecutive blocks and block i attends to the keys up to
  its last query only, skipping the masked upper triangle: ~(n + 1) / 2n of
  the [Q, K] work, the same output (each block's dropout mask is drawn on
  its own).
  """
  num_heads: int
  features: int
  dropout: float
  init_std: float = 0.0
  dropout_rng: str = "hash"   # models/dropout.py: hash | prng
  attn_dropout: str = "shared"  # shared | per_row (see the module docstring)
  qkv_init: str = "dense"       # dense | torch
  dtype: str = "float32"        # matmul operands (`SASRec.dtype`)

  def _attend(self, q, k, v, mask, deterministic):
    cdt = jnp.dtype(self.dtype)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q.astype(cdt), k.astype(cdt),
                        preferred_element_type=jnp.float32)      # [B,H,Q,K]
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    w = jax.nn.softmax(logits, axis=-1)
    if not deterministic and self.dropout > 0:
      shape = w.shape if self.attn_dropout == "per_row" else (
          (1, 1) + w.shape[2:])
      keep = dropout_lib.keep_mask(self.make_rng("dropout"), self.dropout,
                                   shape, self.dropout_rng)
      w = jnp.where(keep, w / (1 - self.dropout), 0.0)
    return jnp.einsum("bhqk,bkhd->bqhd", w.astype(cdt), v.astype(cdt),
                      preferred_element_type=jnp.float32)        # [B,Q,H,Dh]

  @nn.compact
  def __call__(self, q_in, kv_in, mask, deterministic: bool,
               causal_blocks: int = 1):
    h = self.num_heads
    dh = self.features // h
    init = kernel_init(self.init_std)
    qkv = init
    if self.qkv_init == "torch":
      bound = (6.0 / (4 * self.features)) ** 0.5
      qkv = lambda key, shape, dtype=jnp.float32: jax.random.uniform(
          key, shape, dtype, -bound, bound)
    mx = mixed(self.dtype)
    dense = lambda name: nn.DenseGeneral((h, dh), kernel_init=qkv, name=name,
                                         **mx)
    q = dense("query")(q_in) / jnp.sqrt(dh).astype(q_in.dtype)  # [B,Q,H,Dh]
    k = dense("key")(kv_in)
    v = dense("value")(kv_in)
    n, length = causal_blocks, q.shape[1]
    if n > 1 and length == k.shape[1]:
      bounds = [length * i // n for i in range(n + 1)]
      out = jnp.concatenate([
          self._attend(q[:, s:e], k[:, :e], v[:, :e], mask[:, :, s:e, :e],
                       deterministic)
          for s, e in zip(bounds[:-1], bounds[1:])], axis=1)
    else:
      out = self._attend(q, k, v, mask, deterministic)
    return nn.DenseGeneral(self.features, axis=(-2, -1), kernel_init=init,
                           name="out", **mx)(out)


class SASRec(nn.Module):
  """Sequence `[B, L]` int32 (left-padded, 0 = pad) -> hidden `[B, L, D]`."""
  num_items: int
  hidden: int = 64
  num_blocks: int = 2
  num_heads: int = 1
  max_len: int = 200
  dropout: float = 0.2
  init_std: float = 0.0
  attn_blocks: int = 1     # causal query blocks, each >= MIN_BLOCK wide
  dropout_rng: str = "hash"  # dropout masks: models/dropout.py
  attn_dropout: str = "shared"   # shared | per_row
  qkv_init: str = "dense"        # dense | torch
  positions: str = "newest"      # newest | oldest
  dtype: str = "float32"         # matmul operands: float32 | bfloat16

  def setup(self):
    self.item_embed = nn.Embed(self.num_items + 1, self.hidden,
                               embedding_init=EMBED_INIT)
    self.pos_embed = nn.Embed(self.max_len, self.hidden,
                              embedding_init=EMBED_INIT)
    self.emb_dropout = dropout_lib.Dropout(self.dropout, self.dropout_rng)
    self.attn_ln = [nn.LayerNorm(epsilon=1e-8) for _ in range(self.num_blocks)]
    self.attn = [SelfAttention(self.num_heads, self.hidden, self.dropout,
                               self.init_std, self.dropout_rng,
                               self.attn_dropout, self.qkv_init, self.dtype)
                 for _ in range(self.num_blocks)]
    self.ffn_ln = [nn.LayerNorm(epsilon=1e-8) for _ in range(self.num_blocks)]
    self.ffn = [PointWiseFFN(self.hidden, self.dropout, self.init_std,
                             self.dropout_rng, self.dtype)
                for _ in range(self.num_blocks)]
    self.final_ln = nn.LayerNorm(epsilon=1e-8)

  def __call__(self, seq, train: bool = False, last_only: bool = False):
    """Hidden states [B, L, D]; with `last_only`, [B, 1, D] of the newest
    position (the last block then attends from that query alone)."""
    length = seq.shape[1]
    valid = (seq > 0)[..., None]                                # [B, L, 1]
    x = self.item_embed(seq) * (self.hidden ** 0.5)             # [B, L, D]
    if self.positions == "oldest":
      # Counted from the row's first item: 0, 1, ... (pads take 0).
      pos = jnp.maximum(jnp.cumsum(seq > 0, axis=1) - 1, 0)    # [B, L]
      x = x + self.pos_embed(pos)
    else:
      # Counted from the right end: the newest item is max_len - 1.
      pos = jnp.arange(self.max_len - length, self.max_len)
      x = x + self.pos_embed(pos)[None]
    x = self.emb_dropout(x, deterministic=not train) * valid
    blocks = max(1, min(self.attn_blocks, length // MIN_BLOCK))
    causal = jnp.tril(jnp.ones((length, length), dtype=bool))
    mask = causal[None, None] & (seq > 0)[:, None, None, :]     # [B,1,L,L]
    for i in range(self.num_blocks):
      q = self.attn_ln[i](x)
      if last_only and i == self.num_blocks - 1:
        q, mask, valid = q[:, -1:], mask[:, :, -1:], valid[:, -1:]
      x = q + self.attn[i](q, x, mask, deterministic=not train,
                           causal_blocks=blocks)
      x = self.ffn[i](self.ffn_ln[i](x), train) * valid
    return self.final_ln(x)
