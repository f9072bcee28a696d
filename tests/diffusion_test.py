"""Tests of diffusion.py and models/denoiser.py against closed forms."""

import collections
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diff4rec_jax import diffusion
from diff4rec_jax.models import denoiser as denoiser_lib


def _abar(betas):
  return np.cumprod(1.0 - np.asarray(betas, np.float64))


def test_linear_schedule_matches_definition():
  s = diffusion.make_schedule("linear", 5, 0.1, 1e-4, 0.02)
  betas = np.linspace(1e-5, 2e-3, 5)
  np.testing.assert_allclose(s.betas, betas, rtol=1e-6)
  np.testing.assert_allclose(s.alphas_cumprod, _abar(betas), rtol=1e-6)
  np.testing.assert_allclose(s.alphas_cumprod_prev[0], 1.0)
  assert s.num_steps == 5 and s.betas.dtype == jnp.float32


def test_linear_var_schedule_makes_variance_linear():
  s = diffusion.make_schedule("linear-var", 8, 0.1, 1e-4, 0.02)
  np.testing.assert_allclose(1.0 - s.alphas_cumprod,
                             np.linspace(1e-5, 2e-3, 8), rtol=1e-3, atol=1e-7)


def test_cosine_schedule_in_range_and_reaches_noise():
  s = diffusion.make_schedule("cosine", 50)
  b = np.asarray(s.betas)
  assert (b > 0).all() and (b <= 0.999).all()
  assert float(s.alphas_cumprod[-1]) < 1e-3
  assert np.all(np.diff(np.asarray(s.alphas_cumprod)) < 0)


def test_bad_schedule_raises():
  with pytest.raises(ValueError, match="schedule"):
    diffusion.make_schedule("quadratic", 5)
  with pytest.raises(ValueError, match="steps"):
    diffusion.make_schedule("linear", 0)


def test_q_sample_exact_with_fixed_eps():
  s = diffusion.make_schedule("cosine", 10)
  rng = np.random.default_rng(0)
  z0 = rng.normal(size=(4, 3)).astype(np.float32)
  eps = rng.normal(size=(4, 3)).astype(np.float32)
  i = np.array([0, 3, 7, 9], np.int32)
  got = diffusion.q_sample(s, jnp.asarray(z0), jnp.asarray(i),
                           jnp.asarray(eps))
  ab = _abar(np.asarray(s.betas, np.float64))[i][:, None]
  want = np.sqrt(ab) * z0 + np.sqrt(1 - ab) * eps
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_q_sample_moments_match_eq4_and_the_iterated_chain():
  """Mean/variance of z_t over many draws: Eq. 4 and Eq. 3 iterated."""
  s = diffusion.make_schedule("cosine", 6)
  n, d = 40000, 3
  z0 = jnp.array([1.5, -0.5, 0.25], jnp.float32)
  betas = np.asarray(s.betas, np.float64)
  ab = _abar(betas)
  key = jax.random.key(0)
  for t in (0, 2, 5):
    i = jnp.full((n,), t, jnp.int32)
    eps = jax.random.normal(jax.random.fold_in(key, t), (n, d))
    zt = np.asarray(diffusion.q_sample(s, jnp.broadcast_to(z0, (n, d)), i,
                                       eps))
    se = math.sqrt((1 - ab[t]) / n)
    np.testing.assert_allclose(zt.mean(0), np.sqrt(ab[t]) * z0, atol=5 * se)
    np.testing.assert_allclose(zt.var(0), 1 - ab[t], rtol=0.05, atol=1e-4)
    # Eq. 3 applied t + 1 times from z0 gives the same distribution.
    z = np.broadcast_to(np.asarray(z0, np.float64), (n, d))
    g = np.random.default_rng(t)
    for k in range(t + 1):
      z = np.sqrt(1 - betas[k]) * z + np.sqrt(betas[k]) * g.normal(
          size=(n, d))
    np.testing.assert_allclose(z.mean(0), zt.mean(0), atol=10 * se)
    np.testing.assert_allclose(z.var(0), zt.var(0), rtol=0.06, atol=1e-4)


def _oracle(s, z0, predict):
  """A 'denoiser' that knows z0: returns the exact eps (or z0)."""
  def model_fn(zt, i):
    if predict == "z0":
      return jnp.broadcast_to(z0, zt.shape)
    return ((zt - s.sqrt_alphas_cumprod[i][:, None] * z0) /
            s.sqrt_one_minus_alphas_cumprod[i][:, None])
  return model_fn


@pytest.mark.parametrize("kind,steps,start,predict,noise", [
    ("linear", 5, 5, "eps", False), ("linear", 5, 2, "z0", False),
    ("linear-var", 20, 20, "eps", True), ("linear-var", 20, 7, "z0", True),
    ("cosine", 10, 6, "eps", True), ("cosine", 10, 10, "z0", False),
    ("linear", 1, 1, "eps", True)])
def test_reverse_with_oracle_recovers_z0(kind, steps, start, predict, noise):
  s = diffusion.make_schedule(kind, steps, 0.5 if kind != "cosine" else 0.1,
                              1e-3, 0.2)
  key = jax.random.key(1)
  z0 = jax.random.normal(key, (8, 4))
  eps = jax.random.normal(jax.random.fold_in(key, 1), (8, 4))

  @jax.jit
  def run(z0, eps, rng):
    return diffusion.corrupt_and_denoise(s, _oracle(s, z0, predict), z0,
                                         start, eps, predict, rng=rng,
                                         sampling_noise=noise)

  out = run(z0, eps, jax.random.fold_in(key, 2))
  np.testing.assert_allclose(out, z0, rtol=1e-4, atol=1e-4)
  if noise and start > 1:  # the noise is really drawn (z_1 differs)
    zt = diffusion.q_sample(s, z0, jnp.full((8,), start - 1), eps)
    a = diffusion.reverse(s, _oracle(s, z0, predict), zt, start, predict,
                          jax.random.key(5), True)
    np.testing.assert_allclose(a, z0, rtol=1e-4, atol=1e-4)


def test_reverse_intermediate_steps_follow_posterior_mean():
  """Oracle without noise: each step lands on the DDPM posterior mean."""
  s = diffusion.make_schedule("linear", 4, 1.0, 0.01, 0.3)
  z0 = jnp.ones((2, 3))
  zt = jnp.full((2, 3), 0.3)
  one = diffusion.reverse(s, _oracle(s, z0, "z0"), zt, 1, "z0")
  np.testing.assert_allclose(one, z0, rtol=1e-6)  # t = 1 mean is z0
  two = diffusion.reverse(s, _oracle(s, z0, "z0"), zt, 2, "z0")
  np.testing.assert_allclose(two, z0, rtol=1e-6)
  b, ab = np.asarray(s.betas, np.float64), _abar(s.betas)
  # Check the posterior mean itself against the closed form.
  i = jnp.array([1, 1])
  pm = diffusion.posterior_mean(s, z0, zt, i)
  want = (np.sqrt(ab[0]) * b[1] / (1 - ab[1]) * 1.0 +
          np.sqrt(1 - b[1]) * (1 - ab[0]) / (1 - ab[1]) * 0.3)
  np.testing.assert_allclose(pm, np.full((2, 3), want), rtol=1e-5)


def test_reverse_is_one_scan_compiled_once():
  s = diffusion.make_schedule("linear", 50)
  traces = collections.Counter()
  w = jnp.eye(3) * 0.1

  def model_fn(zt, i):
    return zt @ w + i[:, None].astype(jnp.float32) * 1e-3

  @jax.jit
  def run(z):
    traces["n"] += 1
    return diffusion.reverse(s, model_fn, z, 40)

  run(jnp.ones((4, 3)))
  run(jnp.zeros((4, 3)))
  assert traces["n"] == 1
  jaxpr = str(jax.make_jaxpr(lambda z: diffusion.reverse(s, model_fn, z, 40))(
      jnp.ones((4, 3))))
  assert "scan" in jaxpr and "length=40" in jaxpr
  assert jaxpr.count("dot_general") == 1  # the model body appears once


def test_reverse_from_zero_is_identity_and_rejects_bad_start():
  s = diffusion.make_schedule("linear", 5)
  z = jnp.ones((2, 3))
  assert diffusion.reverse(s, lambda a, b: a, z, 0) is z
  with pytest.raises(ValueError, match="start"):
    diffusion.reverse(s, lambda a, b: a, z, 6)


@pytest.mark.parametrize("predict", ["eps", "z0"])
def test_noise_loss_zero_for_oracle_positive_otherwise(predict):
  s = diffusion.make_schedule("cosine", 10)
  z0 = jax.random.normal(jax.random.key(3), (16, 5))
  loss, z0_hat = diffusion.noise_loss(s, _oracle(s, z0, predict), z0,
                                      jax.random.key(4), predict)
  assert loss.shape == (16,)
  np.testing.assert_allclose(loss, 0.0, atol=1e-6)
  np.testing.assert_allclose(z0_hat, z0, rtol=1e-3, atol=1e-3)
  bad, _ = diffusion.noise_loss(s, lambda zt, i: jnp.zeros_like(zt), z0,
                                jax.random.key(4), predict)
  assert float(bad.mean()) > 0.5


def test_timestep_embedding_matches_formula():
  t = jnp.array([0, 1, 7], jnp.int32)
  for dim in (10, 7):
    emb = np.asarray(denoiser_lib.timestep_embedding(t, dim))
    half = dim // 2
    f = np.exp(-math.log(10000.0) * np.arange(half) / half)
    a = np.array([0, 1, 7])[:, None] * f[None]
    want = np.concatenate([np.cos(a), np.sin(a)], -1)
    if dim % 2:
      want = np.concatenate([want, np.zeros((3, 1))], -1)
    np.testing.assert_allclose(emb, want, rtol=1e-5, atol=1e-6)


def test_denoiser_shapes_and_step_dependence():
  den = denoiser_lib.Denoiser(hidden=(16,), emb_size=10, dropout=0.2)
  z = jnp.ones((3, 6))
  t = jnp.array([0, 1, 2], jnp.int32)
  p = jax.jit(den.init)(jax.random.key(0), z, t)
  out = jax.jit(den.apply)(p, z, t)
  assert out.shape == (3, 6) and out.dtype == jnp.float32
  assert not np.allclose(out[0], out[1])  # the step matters
  tr = jax.jit(lambda p, z, t, k: den.apply(
      p, z, t, deterministic=False, rngs={"dropout": k}))(
          p, z, t, jax.random.key(1))
  assert tr.shape == (3, 6)
