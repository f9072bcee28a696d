"""Caser (Tang & Wang, 2018): horizontal and vertical convolutions.

Caser reads a window of the last W items. To train at every position (the
same objective as SASRec and GRU4Rec), the window is slid along the sequence:
for position t the window is items t-W+1..t (zeros before the start), so the
output is `[B, L, D]` and position L-1 is the classic Caser prediction.

* vertical filters: F_v weighted sums of the W embeddings  -> F_v * D
* horizontal filters: for every height h in 1..W, F_h filters of shape
  [h, D] over each sub-window of the window, ReLU, max-pooled over the
  W-h+1 sub-windows                                         -> F_h * W
The concatenation goes through dropout and a dense ReLU layer to D. The user
embedding of the original Caser is left out (items only, as the other
backbones), and the output is scored against the shared item embeddings.
"""

import flax.linen as nn
import jax.numpy as jnp

from diff4rec_jax.models import dropout as dropout_lib
from diff4rec_jax.models.sasrec import EMBED_INIT


class Caser(nn.Module):
  """Sequence `[B, L]` int32 (left-padded) -> hidden `[B, L, D]`."""
  num_items: int
  hidden: int = 64
  window: int = 5
  h_filters: int = 16
  v_filters: int = 4
  dropout: float = 0.2
  max_len: int = 200      # unused; kept for a uniform constructor
  dropout_rng: str = "hash"  # dropout masks: models/dropout.py

  def setup(self):
    self.item_embed = nn.Embed(self.num_items + 1, self.hidden,
                               embedding_init=EMBED_INIT)
    self.v_kernel = self.param("v_kernel", nn.initializers.lecun_normal(),
                               (self.window, self.v_filters))
    self.h_convs = [nn.Dense(self.h_filters, name=f"h_conv_{h}")
                    for h in range(1, self.window + 1)]
    self.drop = dropout_lib.Dropout(self.dropout, self.dropout_rng)
    self.fc = nn.Dense(self.hidden, name="fc")

  def __call__(self, seq, train: bool = False, last_only: bool = False):
    b, length = seq.shape
    w = self.window
    e = self.item_embed(seq) * (seq > 0)[..., None]             # [B, L, D]
    padded = jnp.pad(e, ((0, 0), (w - 1, 0), (0, 0)))
    # windows[:, t, j] = e[:, t - w + 1 + j]
    windows = jnp.stack([padded[:, j:j + length] for j in range(w)], axis=2)
    vert = jnp.einsum("blwd,wf->blfd", windows, self.v_kernel)
    vert = vert.reshape(b, length, self.v_filters * self.hidden)
    horiz = []
    for h, conv in zip(range(1, w + 1), self.h_convs):
      sub = windows[:, :, w - h:, :].reshape(b, length, h * self.hidden)
      c = nn.relu(conv(sub))                                    # [B, L, F_h]
      # Max over the sub-windows that end at t-(w-h)..t.
      c_pad = jnp.pad(c, ((0, 0), (w - h, 0), (0, 0)))
      pooled = c_pad[:, w - h:]
      for s in range(w - h):
        pooled = jnp.maximum(pooled, c_pad[:, s:s + length])
      horiz.append(pooled)
    x = jnp.concatenate([vert] + horiz, axis=-1)
    if last_only:
      x = x[:, -1:]
    x = self.drop(x, deterministic=not train)
    return nn.relu(self.fc(x))
