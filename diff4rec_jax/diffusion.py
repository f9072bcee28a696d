"""Gaussian diffusion in the VAE's latent space (paper section 3.2, Eq. 3-7).

This module owns the math of the diffusion and nothing about networks:

* `make_schedule`: the variance schedule beta_1..beta_T and every quantity
  derived from it, as float32 arrays (a `Schedule` pytree).
* `q_sample`: the closed-form forward process q(z_t | z_0) (Eq. 4).
* `noise_loss`: the denoising objective (Eq. 7), predicting eps (DDPM) or z_0
  (the L-DiffRec choice).
* `p_mean`, `reverse`: the reverse process (Eq. 5) with the DDPM posterior
  mean, optionally with posterior noise, from a given step down to 0 in one
  `lax.scan`; `corrupt_and_denoise` is the inference of section 3.3.

Step indexing: arrays are 0-based, index `i` holds paper step `t = i + 1`.
So `q_sample(s, z0, i, eps)` returns z_{i+1}, and "corrupt to step k" (k in
1..T) means index k - 1. Step 0 (k = 0) is z_0 itself.

The denoiser is any function `model_fn(z_t [B, D], i [B] int32) -> [B, D]`
(a closure over parameters), so these functions stay pure and jittable.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

SCHEDULES = ("linear", "linear-var", "cosine")
PREDICT = ("eps", "z0")

ModelFn = Callable[[jax.Array, jax.Array], jax.Array]


class Schedule(NamedTuple):
  """A variance schedule and its derived coefficients, each [T] float32."""
  betas: jax.Array
  alphas_cumprod: jax.Array           # abar_t = prod_{s<=t} (1 - beta_s)
  alphas_cumprod_prev: jax.Array      # abar_{t-1}, with abar_0 = 1
  sqrt_alphas_cumprod: jax.Array
  sqrt_one_minus_alphas_cumprod: jax.Array
  sqrt_recip_alphas_cumprod: jax.Array
  sqrt_recipm1_alphas_cumprod: jax.Array
  posterior_variance: jax.Array       # beta~_t of q(z_{t-1} | z_t, z_0)
  posterior_log_variance_clipped: jax.Array
  posterior_mean_coef1: jax.Array     # multiplies z_0
  posterior_mean_coef2: jax.Array     # multiplies z_t

  @property
  def num_steps(self) -> int:
    return int(self.betas.shape[0])


def _betas_for_alpha_bar(steps: int, alpha_bar, max_beta: float = 0.999):
  t1 = np.arange(steps, dtype=np.float64) / steps
  t2 = (np.arange(steps, dtype=np.float64) + 1) / steps
  return np.minimum(1.0 - alpha_bar(t2) / alpha_bar(t1), max_beta)


def make_betas(kind: str, steps: int, noise_scale: float = 0.1,
               noise_min: float = 1e-4, noise_max: float = 0.02) -> np.ndarray:
  """[T] float64 betas.

  linear: beta linear from noise_scale*noise_min to noise_scale*noise_max
    (DDPM's schedule with DiffRec's scaling).
  linear-var: 1 - abar_t linear over the same range (DiffRec's 'linear-var',
    the L-DiffRec default).
  cosine: the improved-DDPM cosine abar (noise_* are not used), beta <= 0.999.
  """
  if kind not in SCHEDULES:
    raise ValueError(f"schedule: {kind!r} is not one of {SCHEDULES}")
  if steps < 1:
    raise ValueError(f"steps: must be >= 1, got {steps}")
  if kind == "cosine":
    f = lambda t: np.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = _betas_for_alpha_bar(steps, f)
  else:
    start, end = noise_scale * noise_min, noise_scale * noise_max
    betas = np.linspace(start, end, steps, dtype=np.float64)
    if kind == "linear-var":
      abar = 1.0 - betas
      abar_prev = np.concatenate([[1.0], abar[:-1]])
      betas = np.minimum(1.0 - abar / abar_prev, 0.999)
  if not ((betas > 0).all() and (betas < 1).all()):
    raise ValueError(
        f"schedule {kind!r}: betas must lie in (0, 1), got min "
        f"{betas.min():.3g} max {betas.max():.3g}; check noise_scale, "
        "noise_min, noise_max.")
  return betas


def make_schedule(kind: str = "linear", steps: int = 5,
                  noise_scale: float = 0.1, noise_min: float = 1e-4,
                  noise_max: float = 0.02) -> Schedule:
  """Builds the schedule (computed in float64, stored as float32 arrays)."""
  betas = make_betas(kind, steps, noise_scale, noise_min, noise_max)
  alphas = 1.0 - betas
  ac = np.cumprod(alphas)
  ac_prev = np.concatenate([[1.0], ac[:-1]])
  post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
  # post_var[0] is 0 (z_0 is deterministic given the mean); DDPM clips its log.
  post_logvar = np.log(np.concatenate([post_var[1:2], post_var[1:]])
                       if steps > 1 else np.maximum(post_var, 1e-20))
  f32 = lambda a: jnp.asarray(a, dtype=jnp.float32)
  return Schedule(
      betas=f32(betas),
      alphas_cumprod=f32(ac),
      alphas_cumprod_prev=f32(ac_prev),
      sqrt_alphas_cumprod=f32(np.sqrt(ac)),
      sqrt_one_minus_alphas_cumprod=f32(np.sqrt(1.0 - ac)),
      sqrt_recip_alphas_cumprod=f32(np.sqrt(1.0 / ac)),
      sqrt_recipm1_alphas_cumprod=f32(np.sqrt(1.0 / ac - 1.0)),
      posterior_variance=f32(post_var),
      posterior_log_variance_clipped=f32(post_logvar),
      posterior_mean_coef1=f32(betas * np.sqrt(ac_prev) / (1.0 - ac)),
      posterior_mean_coef2=f32((1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac)),
  )


def _at(arr: jax.Array, i: jax.Array) -> jax.Array:
  """arr[i] as a [B, 1] column, to broadcast against [B, D]."""
  return arr[i][:, None]


def q_sample(s: Schedule, z0: jax.Array, i: jax.Array,
             eps: jax.Array) -> jax.Array:
  """z_t ~ q(z_t | z_0) (Eq. 4), reparameterized with the given noise.

  Args:
    s: the schedule.
    z0: [B, D] clean latents.
    i: [B] int32 step index (paper step t = i + 1).
    eps: [B, D] standard normal noise.
  Returns:
    [B, D] sqrt(abar_t) z0 + sqrt(1 - abar_t) eps.
  """
  return (_at(s.sqrt_alphas_cumprod, i) * z0 +
          _at(s.sqrt_one_minus_alphas_cumprod, i) * eps)


def predict_z0_from_eps(s: Schedule, zt: jax.Array, i: jax.Array,
                        eps: jax.Array) -> jax.Array:
  """Inverts Eq. 4 for z_0 given z_t and a noise estimate. [B, D]."""
  return (_at(s.sqrt_recip_alphas_cumprod, i) * zt -
          _at(s.sqrt_recipm1_alphas_cumprod, i) * eps)


def posterior_mean(s: Schedule, z0: jax.Array, zt: jax.Array,
                   i: jax.Array) -> jax.Array:
  """Mean of q(z_{t-1} | z_t, z_0) (the DDPM posterior). [B, D]."""
  return (_at(s.posterior_mean_coef1, i) * z0 +
          _at(s.posterior_mean_coef2, i) * zt)


def p_mean(s: Schedule, model_out: jax.Array, zt: jax.Array, i: jax.Array,
           predict: str):
  """Reverse-step mean mu_theta(z_t, t) (Eq. 5) and the z_0 estimate.

  Returns:
    (mean [B, D], z0_hat [B, D]).
  """
  if predict == "eps":
    z0_hat = predict_z0_from_eps(s, zt, i, model_out)
  elif predict == "z0":
    z0_hat = model_out
  else:
    raise ValueError(f"predict: {predict!r} is not one of {PREDICT}")
  return posterior_mean(s, z0_hat, zt, i), z0_hat


def noise_loss(s: Schedule, model_fn: ModelFn, z0: jax.Array,
               rng: jax.Array, predict: str = "eps"):
  """The denoising loss of Eq. 7, one uniformly drawn step per row.

  ||target - model(z_t, t)||^2 summed over latent dims (Eq. 7 as written),
  where target is eps (DDPM) or z_0 (L-DiffRec's x0 mode).

  Args:
    s: the schedule.
    model_fn: (z_t [B, D], i [B]) -> [B, D].
    z0: [B, D] clean latents.
    rng: key for the step and the noise.
    predict: 'eps' or 'z0'.
  Returns:
    (loss [B], z0_hat [B, D]) with z0_hat the model's estimate of z_0.
  """
  k_t, k_eps = jax.random.split(rng)
  b = z0.shape[0]
  i = jax.random.randint(k_t, (b,), 0, s.num_steps, dtype=jnp.int32)
  eps = jax.random.normal(k_eps, z0.shape, z0.dtype)
  zt = q_sample(s, z0, i, eps)
  out = model_fn(zt, i)
  if predict == "eps":
    target, z0_hat = eps, predict_z0_from_eps(s, zt, i, out)
  elif predict == "z0":
    target, z0_hat = z0, out
  else:
    raise ValueError(f"predict: {predict!r} is not one of {PREDICT}")
  return jnp.sum(jnp.square(target - out), axis=-1), z0_hat


def reverse(s: Schedule, model_fn: ModelFn, zt: jax.Array, start: int,
            predict: str = "eps", rng: Optional[jax.Array] = None,
            sampling_noise: bool = False) -> jax.Array:
  """Runs the reverse process from paper step `start` down to 0 (Eq. 5).

  One `lax.scan` over the step indices start-1, ..., 0; each step applies the
  DDPM posterior mean with the model's z_0 estimate, plus (if
  `sampling_noise`) posterior noise exp(0.5 logvar) * n on every step but the
  last. Without noise it is DiffRec's deterministic inference.

  Args:
    s: the schedule.
    model_fn: (z_t [B, D], i [B]) -> [B, D].
    zt: [B, D] latents at paper step `start`.
    start: static int in 0..T; 0 returns `zt` unchanged.
    predict: 'eps' or 'z0'.
    rng: key for posterior noise (required if `sampling_noise`).
    sampling_noise: sample z_{t-1} instead of taking the mean.
  Returns:
    [B, D] the estimate of z_0.
  """
  if not 0 <= start <= s.num_steps:
    raise ValueError(f"reverse: start step {start} outside 0..{s.num_steps}")
  if start == 0:
    return zt
  if sampling_noise and rng is None:
    raise ValueError("reverse: sampling_noise=True needs an rng")
  b = zt.shape[0]

  def step(z, idx):
    i = jnp.full((b,), idx, dtype=jnp.int32)
    mean, _ = p_mean(s, model_fn(z, i), z, i, predict)
    if sampling_noise:
      n = jax.random.normal(jax.random.fold_in(rng, idx), z.shape, z.dtype)
      scale = jnp.where(idx > 0,
                        jnp.exp(0.5 * s.posterior_log_variance_clipped[idx]),
                        0.0)
      mean = mean + scale * n
    return mean, None

  idxs = jnp.arange(start - 1, -1, -1, dtype=jnp.int32)
  z, _ = jax.lax.scan(step, zt, idxs)
  return z


def corrupt_and_denoise(s: Schedule, model_fn: ModelFn, z0: jax.Array,
                        step: int, eps: jax.Array, predict: str = "eps",
                        rng: Optional[jax.Array] = None,
                        sampling_noise: bool = False) -> jax.Array:
  """Section 3.3: corrupt z_0 to paper step `step` (Eq. 4), then denoise.

  Args:
    z0: [B, D] (the encoder mean mu(x)).
    step: static int in 0..T (0: no corruption, returns z0).
    eps: [B, D] the forward noise (drawn by the caller, so it can be tied to
      user ids rather than batch positions).
  Returns:
    [B, D] reconstructed z_0.
  """
  if step == 0:
    return z0
  i = jnp.full((z0.shape[0],), step - 1, dtype=jnp.int32)
  zt = q_sample(s, z0, i, eps)
  return reverse(s, model_fn, zt, step, predict, rng, sampling_noise)
