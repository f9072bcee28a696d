"""GRU4Rec (Hidasi et al., 2016) as a next-item sequence encoder.

Item embedding, dropout, a stack of GRU layers run with `nn.scan` over time,
dropout. The hidden state is held at zero over left padding so that outputs
at real positions do not depend on the amount of padding.
"""

import flax.linen as nn
import jax.numpy as jnp

from diff4rec_jax.models import dropout as dropout_lib
from diff4rec_jax.models.sasrec import EMBED_INIT


class _MaskedGRUStep(nn.Module):
  """One GRU step that keeps the carry at zero on padding positions."""
  hidden: int

  @nn.compact
  def __call__(self, carry, inputs):
    x, valid = inputs                                           # [B,D], [B,1]
    new, _ = nn.GRUCell(features=self.hidden, name="cell")(carry, x)
    new = jnp.where(valid, new, jnp.zeros_like(new))
    return new, new


class GRU4Rec(nn.Module):
  """Sequence `[B, L]` int32 (left-padded) -> hidden `[B, L, D]`."""
  num_items: int
  hidden: int = 64
  num_blocks: int = 1     # GRU layers
  dropout: float = 0.2
  max_len: int = 200      # unused; kept for a uniform constructor
  dropout_rng: str = "hash"  # dropout masks: models/dropout.py

  def setup(self):
    self.item_embed = nn.Embed(self.num_items + 1, self.hidden,
                               embedding_init=EMBED_INIT)
    scan_step = nn.scan(_MaskedGRUStep, variable_broadcast="params",
                        split_rngs={"params": False}, in_axes=1, out_axes=1)
    self.layers = [scan_step(self.hidden, name=f"gru_{i}")
                   for i in range(self.num_blocks)]
    self.in_dropout = dropout_lib.Dropout(self.dropout, self.dropout_rng)
    self.out_dropout = dropout_lib.Dropout(self.dropout, self.dropout_rng)

  def __call__(self, seq, train: bool = False, last_only: bool = False):
    valid = (seq > 0)[..., None]                                # [B, L, 1]
    x = self.in_dropout(self.item_embed(seq), deterministic=not train) * valid
    for layer in self.layers:
      carry = jnp.zeros((seq.shape[0], self.hidden), x.dtype)
      _, x = layer(carry, (x, valid))
    if last_only:
      x = x[:, -1:]
    return self.out_dropout(x, deterministic=not train)
