"""The latent denoiser eps_theta(z_t, t) (paper Eq. 5-7).

An MLP over [z_t, emb(t)] in the style of DiffRec's `DNN`: a sinusoidal
timestep embedding passed through one dense layer, concatenated to the
(optionally dropped-out) latent, then hidden layers with an activation and a
linear output of the latent's size. Whether the output is read as eps or as
z_0 is the diffusion's business (`diffusion.p_mean`), not this module's.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "gelu": nn.gelu,
    "sigmoid": nn.sigmoid,
    "leaky_relu": nn.leaky_relu,
}


def timestep_embedding(t: jax.Array, dim: int,
                       max_period: float = 10000.0) -> jax.Array:
  """Sinusoidal embedding of integer steps: [B] -> [B, dim] float32.

  [cos(t f_k), sin(t f_k)] with f_k = max_period^(-k / (dim // 2)); an odd
  `dim` gets a trailing zero column (as in DiffRec / guided-diffusion).
  """
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) *
                  jnp.arange(half, dtype=jnp.float32) / max(half, 1))
  args = t.astype(jnp.float32)[:, None] * freqs[None, :]
  emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
  if dim % 2:
    emb = jnp.concatenate([emb, jnp.zeros_like(emb[:, :1])], axis=-1)
  return emb


class Denoiser(nn.Module):
  """MLP noise (or z_0) predictor.

  Attributes:
    hidden: widths of the hidden layers (e.g. (300,)).
    emb_size: timestep embedding size (DiffRec uses 10).
    act: activation name, a key of ACTIVATIONS.
    dropout: dropout rate on the input latent.
  """
  hidden: Sequence[int] = (300,)
  emb_size: int = 10
  act: str = "tanh"
  dropout: float = 0.0

  @nn.compact
  def __call__(self, zt: jax.Array, t: jax.Array,
               deterministic: bool = True) -> jax.Array:
    """zt [B, D], t [B] int32 step index -> [B, D]."""
    init = nn.initializers.xavier_normal()
    act = ACTIVATIONS[self.act]
    emb = nn.Dense(self.emb_size, kernel_init=init, name="time_emb")(
        timestep_embedding(t, self.emb_size))
    x = zt
    if self.dropout > 0:
      x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
    h = jnp.concatenate([x, emb], axis=-1)
    for k, w in enumerate(self.hidden):
      h = act(nn.Dense(w, kernel_init=init, name=f"hidden_{k}")(h))
    return nn.Dense(zt.shape[-1], kernel_init=init, name="out")(h)
