"""Jitted pieces of the generator phase: models, loss, train step, top-M.

Array functions and step builders only (no files, no loops over epochs):
`make_train_step` (the joint VAE + latent DDPM loss of Eq. 8, one jitted
step), `make_infer_fn` (corrupt mu(x_u), denoise, decode, keep the top-M
unseen items, and rank the validation targets with `metrics.rank_of_target`).
The phase driver (`generator.run_generator_phase`) gives the step to the
training loop (loop.py: epochs, checkpoints) and writes the files; the
batches are built in input_pipeline.py.
"""

from __future__ import annotations

import collections
import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import optax

from diff4rec_jax import config_lib
from diff4rec_jax import diffusion
from diff4rec_jax import metrics as metrics_lib
from diff4rec_jax import sharding
from diff4rec_jax.models import denoiser as denoiser_lib
from diff4rec_jax.models import vae as vae_lib


EVAL_K = 10   # the generator's validation cutoff (HR@10, NDCG@10)


def _block(config):
  return config_lib.sub_block(config, "generator")


# How many times each compiled function has been traced (tests read this).
TRACES = collections.Counter()


def build_models(config, num_items: int):
  """(MultVAE, Denoiser) from the generator block."""
  g = _block(config)
  vae = vae_lib.MultVAE(
      num_items=num_items, latent_size=g.latent_size,
      encoder_hidden=tuple(g.encoder_hidden),
      decoder_hidden=tuple(g.decoder_hidden), act=g.act, dropout=g.dropout,
      encoder_input=g.encoder_input, bag_chunk=g.bag_chunk)
  den = denoiser_lib.Denoiser(hidden=tuple(g.denoiser_hidden),
                              emb_size=g.time_emb_size, act=g.act,
                              dropout=g.denoiser_dropout)
  return vae, den


def make_optimizer(config) -> optax.GradientTransformation:
  g = _block(config)
  return optax.adamw(g.lr, weight_decay=g.weight_decay)


def config_key(config) -> str:
  """A hashable, canonical form of the generator block (for caches)."""
  return json.dumps(_block(config).to_dict(), sort_keys=True)


def from_key(key: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(json.loads(key))


@functools.lru_cache(maxsize=8)
def init_fn(key: str, num_items: int):
  g = from_key(key)
  vae, den = build_models(g, num_items)
  tx = make_optimizer(g)

  def init(rng):
    k1, k2 = jax.random.split(rng)
    vae_p = vae.init({"params": k1}, jnp.zeros((1, 1), jnp.int32))["params"]
    den_p = den.init({"params": k2}, jnp.zeros((1, g.latent_size)),
                     jnp.zeros((1,), jnp.int32))["params"]
    params = {"vae": vae_p, "denoiser": den_p}
    return {"params": params, "opt_state": tx.init(params),
            "step": jnp.zeros((), jnp.int32)}

  # Runs once per phase: XLA's backend optimizations would cost ~4x the
  # compile time (seconds on CPU) for no measurable run time.
  return jax.jit(init).lower(jax.random.key(0)).compile(
      {"xla_backend_optimization_level": 0})


def init_state(config, num_items: int, rng: jax.Array) -> dict:
  """The train state: {'params', 'opt_state', 'step' (int32 scalar)}."""
  return init_fn(config_key(config), num_items)(rng)


def init_params(config, num_items: int, rng: jax.Array) -> dict:
  """{'vae': ..., 'denoiser': ...} freshly initialized."""
  return init_state(config, num_items, rng)["params"]


def phase_keys(seed: int):
  base = jax.random.key(seed)
  return {"init": jax.random.fold_in(base, 1),
          "train": jax.random.fold_in(base, 2),
          "infer": jax.random.fold_in(base, 3)}


def constrain(x, mesh):
  """Pins a per-user [B, ...] array to the batch sharding (None: as is)."""
  if mesh is None:
    return x
  return jax.lax.with_sharding_constraint(x, sharding.batch_sharding(mesh))


def make_loss_fn(config, num_items: int, sched: diffusion.Schedule,
                 mesh=None):
  """loss_fn(params, batch, rng, step) -> (mean loss, metric sums).

  With `mesh`, the encoder's [B, Z] outputs are sharded on B (see the
  module docstring); the values do not change.
  """
  g = _block(config)
  vae, den = build_models(g, num_items)
  cap, anneal = float(g.kl_anneal_cap), int(g.kl_anneal_steps)
  lam, predict, stop = float(g.lam), g.predict, g.stop_grad_z0

  def loss_fn(params, batch, rng, step):
    ids, seg, valid = batch["ids"], batch["seg"], batch["valid"]  # [P] [P] [B]
    b = valid.shape[0]
    k_drop, k_z, k_diff, k_ddrop = jax.random.split(rng, 4)
    mu, logvar = vae.apply({"params": params["vae"]}, ids, seg, b,
                           deterministic=False, rngs={"dropout": k_drop},
                           method=vae_lib.MultVAE.encode)  # [B, Z] each
    mu, logvar = constrain(mu, mesh), constrain(logvar, mesh)
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(k_z, mu.shape)
    logits = vae.apply({"params": params["vae"]}, z,
                       method=vae_lib.MultVAE.decode)  # [B, N + 1]
    nll = vae_lib.multinomial_nll(logits, ids, seg)  # [B]
    kl = vae_lib.kl_divergence(mu, logvar)  # [B]
    z0 = jax.lax.stop_gradient(z) if stop else z

    def model_fn(zt, i):
      return den.apply({"params": params["denoiser"]}, zt, i,
                       deterministic=False, rngs={"dropout": k_ddrop})

    dl, _ = diffusion.noise_loss(sched, model_fn, z0, k_diff, predict)  # [B]
    beta = vae_lib.kl_beta(step, cap, anneal)
    per_user = nll + beta * kl + lam * dl
    count = jnp.sum(valid)
    loss = jnp.sum(per_user * valid) / jnp.maximum(count, 1.0)
    sums = {"loss": jnp.sum(per_user * valid), "nll": jnp.sum(nll * valid),
            "kl": jnp.sum(kl * valid), "noise": jnp.sum(dl * valid),
            "beta": beta * count, "count": count}
    return loss, sums

  return loss_fn


def make_train_step(config, num_items: int, sched: diffusion.Schedule,
                    mesh=None):
  """The jitted step `train_step(state, batch, rng) -> (state, metric sums)`.

  `state` is donated. `rng` is the phase's train key; the step folds the
  global step into it, so a resumed run draws the same randomness. Metric
  sums are over the batch's valid users (divide by 'count'). With `mesh`,
  pass the state replicated, ids/seg [P] replicated and valid [B] sharded
  (`place_batch`); the new state and the sums come back replicated.
  """
  loss_fn = make_loss_fn(config, num_items, sched, mesh)
  tx = make_optimizer(config)

  def train_step(state, batch, rng):
    TRACES["train_step"] += 1
    step = state["step"]
    rng = jax.random.fold_in(rng, step)
    grads, sums = jax.grad(loss_fn, has_aux=True)(state["params"], batch, rng,
                                                  step)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "opt_state": opt_state, "step": step + 1}, sums

  if mesh is None:
    return jax.jit(train_step, donate_argnums=(0,))
  return jax.jit(train_step, donate_argnums=(0,),
                 out_shardings=sharding.replicated(mesh))


@functools.lru_cache(maxsize=8)
def cached_train_step(key: str, num_items: int):
  """The phase's train step, on the mesh of all devices."""
  g = from_key(key)
  return make_train_step(g, num_items, schedule_from_config(g),
                         sharding.make_mesh())


def top_m_probs(scores: jax.Array, vals: jax.Array, idx: jax.Array,
                 norm: str):
  """Items and probabilities of a top-M selection.

  Args:
    scores: [B, N + 1] logits with excluded items at -inf.
    vals, idx: [B, M] the top-M values and their item ids.
    norm: 'all' (softmax over every non-excluded item, so a row sums to the
      mass of its M items) or 'topm' (renormalized over the M items).
  Returns:
    items [B, M] int32 (0 where fewer than M items were left), probs [B, M]
    float32 (0 there).
  """
  ok = jnp.isfinite(vals)
  if norm == "all":
    logz = jax.nn.logsumexp(scores, axis=-1, keepdims=True)
    probs = jnp.exp(vals - logz)
  elif norm == "topm":
    probs = jax.nn.softmax(vals, axis=-1)
  else:
    raise ValueError(f"prob_norm: {norm!r} is not one of 'all', 'topm'")
  return (jnp.where(ok, idx, 0).astype(jnp.int32),
          jnp.where(ok, probs, 0.0).astype(jnp.float32))


def top_k(scores: jax.Array, m: int, mesh):
  """`lax.top_k` of each row; per device under a mesh.

  The SPMD partitioner does not split top_k over the batch axis (it
  all-gathers the [B, N + 1] scores), so under a mesh each device takes the
  top-k of its own rows in a `shard_map`. Same values either way.
  """
  if mesh is None:
    return jax.lax.top_k(scores, m)
  spec = jax.sharding.PartitionSpec("data")
  return jax.shard_map(lambda s: tuple(jax.lax.top_k(s, m)), mesh=mesh,
                       in_specs=spec, out_specs=(spec, spec))(scores)


def make_infer_fn(config, num_items: int, sched: diffusion.Schedule,
                  with_eval: bool = True, mesh=None,
                  exclude_history: bool = True):
  """Jitted `infer(params, ids, seg, hist, hseg, targets, users, key)`.

  `exclude_history=False` lets the user's own training items into the
  top-M (`augment.exclude_history`); the validation ranks mask them always.

  `with_eval=False` skips the validation ranks (and the VAE-only decode),
  which roughly halves the work per batch; the ranks are then zeros.
  With `mesh`: params and the bags replicated, targets and users sharded on
  B (`place_batch`); the [B, ...] outputs come back sharded on B.

  Args (of the returned function):
    params: {'vae', 'denoiser'}.
    ids, seg: [P] flat bag of the encoder input (capped training prefix).
    hist, hseg: [Ph] flat bag of the full training prefix (masked from the
      output).
    targets: [B] int32 validation targets (for the ranks).
    users: [B] int32 user rows (the forward noise is keyed by them).
    key: the phase's inference key.
  Returns:
    top_items [B, M] int32, top_probs [B, M] float32, rank_gen [B] int32
    (x_hat_u through the diffusion), rank_vae [B] int32 (decoder of mu).
  """
  g = _block(config)
  vae, den = build_models(g, num_items)
  m, step, predict = g.top_m, g.inference_step, g.predict
  noise, norm = g.sampling_noise, g.prob_norm

  def infer(params, ids, seg, hist, hseg, targets, users, key):
    TRACES["infer"] += 1
    b = users.shape[0]
    mu, _ = vae.apply({"params": params["vae"]}, ids, seg, b,
                      deterministic=True,
                      method=vae_lib.MultVAE.encode)  # [B, Z]
    mu = constrain(mu, mesh)

    def model_fn(zt, i):
      return den.apply({"params": params["denoiser"]}, zt, i,
                       deterministic=True)

    def one_user(z0, u):
      k_eps, k_rev = jax.random.split(jax.random.fold_in(key, u))
      eps = jax.random.normal(k_eps, z0.shape)
      z = diffusion.corrupt_and_denoise(sched, model_fn, z0[None], step,
                                        eps[None], predict, k_rev, noise)
      return z[0]

    z_hat = jax.vmap(one_user)(mu, users)  # [B, Z]
    decode = functools.partial(vae.apply, {"params": params["vae"]},
                               method=vae_lib.MultVAE.decode)
    logits = constrain(decode(constrain(z_hat, mesh)), mesh)  # [B, N + 1]
    # Padding entries (id 0) mark column 0, which must be excluded anyway.
    in_hist = constrain(
        jnp.zeros(logits.shape, bool).at[hseg, hist].set(True), mesh)
    if exclude_history:
      scores = jnp.where(in_hist, -jnp.inf, logits)
    else:
      scores = logits.at[:, 0].set(-jnp.inf)
    vals, idx = top_k(scores, m, mesh)  # [B, M]
    top_items, top_probs = top_m_probs(scores, vals, idx, norm)
    if not with_eval:
      zeros = jnp.zeros((b,), jnp.int32)
      return top_items, top_probs, zeros, zeros
    # Ranking: the training prefix is masked except the target itself.
    is_tgt = jnp.arange(logits.shape[1])[None, :] == targets[:, None]
    eval_mask = in_hist & ~is_tgt
    rank_gen = metrics_lib.rank_of_target(
        jnp.where(eval_mask, -jnp.inf, logits), targets)
    rank_vae = metrics_lib.rank_of_target(
        jnp.where(eval_mask, -jnp.inf, decode(mu)), targets)
    return top_items, top_probs, rank_gen, rank_vae

  if mesh is None:
    return jax.jit(infer)
  return jax.jit(infer, out_shardings=sharding.batch_sharding(mesh))


@functools.lru_cache(maxsize=8)
def cached_infer_fn(key: str, num_items: int, with_eval: bool,
                     exclude_history: bool = True):
  """The phase's inference function, on the mesh of all devices."""
  g = from_key(key)
  return make_infer_fn(g, num_items, schedule_from_config(g),
                       with_eval, sharding.make_mesh(), exclude_history)


def schedule_from_config(g) -> diffusion.Schedule:
  """The schedule a `config.generator` block describes."""
  return diffusion.make_schedule(g.schedule, g.steps, g.noise_scale, g.noise_min,
                       g.noise_max)
