"""Tests of models/vae.py and generator.py on ML-100K and hand-made data."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from diff4rec_jax import config_lib
from diff4rec_jax import data as data_lib
from diff4rec_jax import generator
from diff4rec_jax import generator_steps
from diff4rec_jax import input_pipeline
from diff4rec_jax import metrics
from diff4rec_jax.models import vae as vae_lib


@pytest.fixture(scope="module")
def ml100k(data_dir):  # data_dir: tests/conftest.py (skips if absent)
  return data_lib.read_interactions(os.path.join(data_dir, "ml-100k.txt"),
                                    "ml-100k")


def tiny_config(**overrides):
  c = base.get_config()
  g = c.generator
  g.latent_size = 8
  g.encoder_hidden = (16,)
  g.decoder_hidden = ()
  g.denoiser_hidden = (16,)
  g.batch_size = 128
  g.infer_batch_size = 256
  g.top_m = 10
  g.epochs = 2
  g.kl_anneal_steps = 10
  g.bag_chunk = 32
  for k, v in overrides.items():
    g[k] = v
  return c


def hand_data(seqs):
  """SequenceData from a list of per-user item lists."""
  users = np.concatenate([[u + 1] * len(s) for u, s in enumerate(seqs)])
  items = np.concatenate(seqs)
  return data_lib.from_interactions(users, items, name="hand")


# -- config ------------------------------------------------------------------
def test_base_config_is_valid():
  config_lib.validate_generator_config(base.get_config())
  config_lib.validate_generator_config(base.get_config().generator)


@pytest.mark.parametrize("field,value", [
    ("steps", 0), ("inference_step", 6), ("inference_step", -1),
    ("top_m", 0), ("schedule", "quad"), ("predict", "v"), ("dropout", 1.0),
    ("lr", 0.0), ("batch_size", 0), ("latent_size", 0), ("noise_min", 0.5),
    ("encoder_hidden", (0,)), ("prob_norm", "x"), ("history_cap", -1)])
def test_validate_names_the_bad_field(field, value):
  c = base.get_config()
  c.generator[field] = value
  with pytest.raises(ValueError, match=f"config.generator.{field}"):
    config_lib.validate_generator_config(c)


def test_validate_top_m_against_items():
  c = base.get_config()
  c.generator.top_m = 50
  with pytest.raises(ValueError, match="top_m"):
    config_lib.validate_generator_config(c, num_items=40)


# -- inputs --------------------------------------------------------------------
def test_train_rows_dedup_time_order_and_cap():
  # train prefix of user 0 = [1, 2, 1, 3]; valid 4, test 5.
  ds = hand_data([[1, 2, 1, 3, 4, 5], [6, 7, 8]])
  indptr, items = input_pipeline.train_rows(ds)
  assert items[indptr[0]:indptr[1]].tolist() == [2, 1, 3]
  assert items[indptr[1]:indptr[2]].tolist() == [6]
  indptr, items = input_pipeline.train_rows(ds, cap=2)
  assert items[indptr[0]:indptr[1]].tolist() == [1, 3]


def test_input_rows_use_training_prefix_only(ml100k):
  ds = ml100k
  indptr, items = input_pipeline.train_rows(ds, cap=0)
  lengths = np.diff(indptr)
  tokens = input_pipeline.token_budget(lengths, 128)
  users, valid = input_pipeline.epoch_batches(lengths, 128, tokens, 0, 1)
  assert valid.sum() == ds.num_users and not valid[-1].all()  # padded
  assert sorted(users[valid].tolist()) == list(range(ds.num_users))
  end = ds.split_end("train")
  vt, tt = ds.targets("valid"), ds.targets("test")
  leaks = 0
  for k in range(users.shape[0]):
    b = input_pipeline.make_batch(indptr, items, users[k], valid[k], tokens)
    assert b["ids"].shape == b["seg"].shape == (tokens,)
    assert b["ids"].dtype == b["seg"].dtype == np.int32
    assert b["valid"].shape == (128,)
    for slot in range(128):
      got = b["ids"][(b["seg"] == slot) & (b["ids"] > 0)]
      if not valid[k][slot]:
        assert got.size == 0
        continue
      u = users[k][slot]
      prefix = set(ds.items[ds.indptr[u]:end[u]].tolist())
      assert set(got.tolist()) == prefix and len(got) == len(prefix)
      leaks += int(vt[u] in got and vt[u] not in prefix)
      leaks += int(tt[u] in got and tt[u] not in prefix)
  assert leaks == 0


def test_pack_batches_respects_both_limits():
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, 50, size=500)
  lengths[7] = 400  # one heavy user
  tokens = input_pipeline.token_budget(lengths, 32)
  assert tokens >= 400 and tokens % 256 == 0
  users, valid = input_pipeline.epoch_batches(lengths, 32, tokens, 7, 3)
  assert sorted(users[valid].tolist()) == list(range(500))
  per_batch = np.where(valid, lengths[users], 0).sum(1)
  assert (per_batch <= tokens).all() and (valid.sum(1) <= 32).all()
  assert (valid.sum(1) >= 1).all()
  again, _ = input_pipeline.epoch_batches(lengths, 32, tokens, 7, 3)
  other, _ = input_pipeline.epoch_batches(lengths, 32, tokens, 7, 4)
  np.testing.assert_array_equal(users, again)  # same (seed, epoch)
  assert not np.array_equal(users[:5], other[:5])
  # A tight budget cuts batches by items, not users.
  u2, v2 = input_pipeline.epoch_batches(lengths, 32, 400, 7, 3)
  assert u2.shape[0] > users.shape[0]
  assert (np.where(v2, lengths[u2], 0).sum(1) <= 400).all()


# -- the VAE ------------------------------------------------------------------
def _random_bag(rng, n, b, h):
  ids = np.zeros((b, h), np.int32)
  for r in range(b):
    k = rng.integers(1, h + 1)
    ids[r, :k] = rng.choice(np.arange(1, n + 1), k, replace=False)
  return ids


def test_embedding_bag_equals_dense():
  rng = np.random.default_rng(0)
  n, b, h, d = 30, 5, 11, 4
  kernel = jnp.asarray(rng.normal(size=(n + 1, d)), jnp.float32)
  ids, seg = vae_lib.padded_to_flat(jnp.asarray(_random_bag(rng, n, b, h)))
  # Shuffle the entries: the bag does not depend on their order or layout.
  perm = rng.permutation(ids.shape[0])
  ids, seg = ids[perm], seg[perm]
  w = jax.jit(vae_lib.bag_weights, static_argnums=(2, 3))(
      ids, seg, b, 0.5, jax.random.key(0))
  assert float(jnp.sum(w == 0)) > float(jnp.sum(ids == 0))  # items dropped
  dense = jax.jit(vae_lib.embed_dense, static_argnums=4)(kernel, ids, seg, w,
                                                          b)
  bag = jax.jit(vae_lib.embed_bag, static_argnums=(4, 5))
  for chunk in (0, 7, 16, 1000):
    np.testing.assert_allclose(bag(kernel, ids, seg, w, b, chunk), dense,
                               rtol=1e-5, atol=1e-5)
  # The dense row is Mult-VAE's L2-normalized multi-hot row.
  x = np.zeros((b, n + 1))
  x[np.asarray(seg), np.asarray(ids)] = 1.0
  x[:, 0] = 0.0
  norm = np.linalg.norm(x, axis=1, keepdims=True)
  w0 = vae_lib.bag_weights(ids, seg, b, 0.5, None)
  np.testing.assert_allclose(vae_lib.multi_hot(ids, seg, w0, b, n), x / norm,
                             rtol=1e-6)


def test_vae_bag_and_dense_encoders_agree_with_dropout_and_grads():
  n = 40
  ids, seg = vae_lib.padded_to_flat(
      jnp.asarray(_random_bag(np.random.default_rng(1), n, 6, 9)))
  kw = dict(num_items=n, latent_size=3, encoder_hidden=(7,), dropout=0.3,
            bag_chunk=16)
  bag = vae_lib.MultVAE(encoder_input="bag", **kw)
  dense = vae_lib.MultVAE(encoder_input="dense", **kw)
  params = jax.jit(bag.init)(jax.random.key(0),
                             jnp.zeros((1, 1), jnp.int32))["params"]

  def f(model, p):
    mu, lv = model.apply({"params": p}, ids, seg, 6, deterministic=False,
                         rngs={"dropout": jax.random.key(3)},
                         method=vae_lib.MultVAE.encode)
    return jnp.sum(mu ** 2) + jnp.sum(lv), (mu, lv)

  (_, (mb, vb)), gb = jax.jit(jax.value_and_grad(lambda p: f(bag, p),
                                                 has_aux=True))(params)
  (_, (md, vd)), gd = jax.jit(jax.value_and_grad(lambda p: f(dense, p),
                                                 has_aux=True))(params)
  assert mb.shape == (6, 3)
  np.testing.assert_allclose(mb, md, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(vb, vd, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-6), gb, gd)


def test_decoder_masks_padding_and_nll_matches_numpy():
  model = vae_lib.MultVAE(num_items=12, latent_size=3, encoder_hidden=(5,),
                          decoder_hidden=(4,))
  ids = jnp.array([[3, 5, 0, 0], [1, 2, 12, 0]], jnp.int32)
  p = jax.jit(model.init)(jax.random.key(0), ids)
  logits, mu, logvar = jax.jit(model.apply)(p, ids)
  assert logits.shape == (2, 13) and mu.shape == (2, 3)
  assert np.all(np.asarray(logits[:, 0]) == vae_lib.NEG)
  nll = np.asarray(vae_lib.multinomial_nll(logits,
                                            *vae_lib.padded_to_flat(ids)))
  lg = np.asarray(logits, np.float64)
  logp = lg - np.log(np.exp(lg - lg.max(1, keepdims=True)).sum(1,
                     keepdims=True)) - lg.max(1, keepdims=True)
  want = [-(logp[0, 3] + logp[0, 5]), -(logp[1, 1] + logp[1, 2] +
                                        logp[1, 12])]
  np.testing.assert_allclose(nll, want, rtol=1e-5)
  kl = vae_lib.kl_divergence(jnp.array([[0.0, 1.0]]), jnp.array([[0.0,
                                                                 np.log(2)]]))
  np.testing.assert_allclose(kl, [0.5 * (2 - 1 - np.log(2) + 1)], rtol=1e-6)


def test_kl_beta_ramps_to_cap():
  beta = lambda s: float(vae_lib.kl_beta(jnp.int32(s), 0.2, 100))
  assert beta(0) == 0.0 and beta(10) == pytest.approx(0.1)
  assert beta(500) == pytest.approx(0.2)
  assert float(vae_lib.kl_beta(jnp.int32(3), 0.2, 0)) == pytest.approx(0.2)


# -- ranking ------------------------------------------------------------------
def test_rank_of_target_matches_numpy_with_ties():
  rng = np.random.default_rng(0)
  scores = rng.integers(0, 5, size=(50, 20)).astype(np.float32)
  scores[rng.random((50, 20)) < 0.2] = -np.inf
  targets = rng.integers(1, 20, size=50).astype(np.int32)
  scores[np.arange(50), targets] = rng.integers(0, 5, size=50)
  got = np.asarray(metrics.rank_of_target(jnp.asarray(scores),
                                             jnp.asarray(targets)))
  for r in range(50):
    t = targets[r]
    others = np.delete(scores[r], t)
    assert got[r] == int(np.sum(others >= scores[r, t]))  # ties ahead
  m = metrics.hr_ndcg(np.array([0, 9, 10, 3]), 10)
  assert m["HR@10"] == 0.75
  assert m["NDCG@10"] == pytest.approx((1 + 1 / np.log2(11) +
                                        1 / np.log2(5)) / 4)


# -- inference ----------------------------------------------------------------
def test_planted_history_item_never_in_top_m():
  # Items 1..6. User 0: prefix [1, 2, 3], valid 4, test 5.
  # User 1: prefix [2, 4, 2], valid 6, test 1. User 2: prefix [1, 3],
  # valid 1 (a repeat of a history item), test 2.
  ds = hand_data([[1, 2, 3, 4, 5], [2, 4, 2, 6, 1], [1, 3, 1, 2]])
  c = tiny_config(top_m=4, inference_step=3, steps=5, prob_norm="all")
  params = generator_steps.init_params(c.generator, ds.num_items,
                                 jax.random.key(0))
  bias = np.zeros(ds.num_items + 1, np.float32)
  bias[[1, 2, 3, 4, 5, 6]] = [20.0, 100.0, 10.0, 50.0, 40.0, 30.0]
  out = params["vae"]["out"]
  params["vae"]["out"] = {"kernel": jnp.zeros_like(out["kernel"]),
                          "bias": jnp.asarray(bias)}
  items, probs, rank_gen, rank_vae = generator.infer_all(c, params, ds)
  assert items.dtype == np.int32 and probs.dtype == np.float32
  assert items.shape == probs.shape == (3, 4)
  # Item 2 (top score) is in every user's training prefix except user 2's.
  assert items[0].tolist() == [4, 5, 6, 0]  # valid/test items allowed; only
  assert items[1].tolist() == [5, 6, 1, 3]  # 3 left for user 0: 0 = filler
  assert items[2].tolist() == [2, 4, 5, 6]  # 1 and 3 excluded
  for u in range(3):
    prefix = set(ds.items[ds.indptr[u]:ds.split_end("train")[u]].tolist())
    assert not prefix & set(items[u].tolist())
  assert 0 not in items[1:]
  # prob_norm='all': softmax over all non-history items.
  s = bias[[4, 5, 6]].astype(np.float64)
  np.testing.assert_allclose(probs[0, :3], np.exp(s - np.log(np.exp(
      s).sum())), rtol=1e-5)
  assert probs[0, 3] == 0.0
  s1 = bias[[1, 3, 5, 6]].astype(np.float64)
  want1 = np.exp(bias[[5, 6, 1, 3]] - np.log(np.exp(s1).sum()))
  np.testing.assert_allclose(probs[1], want1, rtol=1e-5, atol=1e-12)
  # Validation ranks: training prefix masked, the target itself not.
  # u0: target 4 best of {4,5,6} -> 0; u1: target 6 behind 5 -> 1;
  # u2: target 1 (also in history) behind 2, 4, 5, 6 -> 4.
  assert rank_gen.tolist() == [0, 1, 4] and rank_vae.tolist() == [0, 1, 4]


def test_top_m_probs_normalizations():
  scores = jnp.array([[-jnp.inf, 1.0, 2.0, -jnp.inf, 0.5]])
  vals, idx = jax.lax.top_k(scores, 4)
  items, probs = generator_steps.top_m_probs(scores, vals, idx, "all")
  assert items.tolist() == [[2, 1, 4, 0]]
  e = np.exp([2.0, 1.0, 0.5])
  np.testing.assert_allclose(probs[0, :3], e / e.sum(), rtol=1e-6)
  assert float(probs[0, 3]) == 0.0
  vals, idx = jax.lax.top_k(scores, 2)
  _, p_all = generator_steps.top_m_probs(scores, vals, idx, "all")
  _, p_top = generator_steps.top_m_probs(scores, vals, idx, "topm")
  np.testing.assert_allclose(p_all[0], e[:2] / e.sum(), rtol=1e-6)
  np.testing.assert_allclose(p_top[0], e[:2] / e[:2].sum(), rtol=1e-6)


# -- training -----------------------------------------------------------------
def _strip_timing(records):
  return [{k: v for k, v in r.items() if k not in ("users_per_s", "seconds")}
          for r in records]


def test_resume_matches_straight_run(ml100k, tmp_path):
  c = tiny_config(epochs=4, checkpoint_every=2, history_cap=32)
  straight = str(tmp_path / "straight")
  resumed = str(tmp_path / "resumed")
  # The train step compiles once for 4 epochs of batches that hold
  # different numbers of users and items (the last one mostly padding).
  generator_steps.cached_train_step.cache_clear()
  before = generator_steps.TRACES["train_step"]
  p1 = generator.run_generator_phase(c, ml100k, straight)
  assert generator_steps.TRACES["train_step"] - before == 1
  # Preempted after epoch 3: a checkpoint saved there (loop.py), metrics
  # up to 3.
  assert generator.run_generator_phase(c, ml100k, resumed,
                                       stop_after_epoch=3) is None
  assert not os.path.exists(os.path.join(resumed, generator.TOPM_FILE))
  p2 = generator.run_generator_phase(c, ml100k, resumed)
  a, b = generator.load_topm(p1), generator.load_topm(p2)
  np.testing.assert_array_equal(a["items"], b["items"])
  np.testing.assert_array_equal(a["probs"], b["probs"])
  assert a["config_hash"] == b["config_hash"]
  assert a["items"].shape == (ml100k.num_users, 10)
  read = lambda d: [json.loads(x) for x in open(
      os.path.join(d, generator.METRICS_FILE))]
  ma, mb = read(straight), read(resumed)
  assert [r["epoch"] for r in mb if r["kind"] == "train"] == [1, 2, 3, 4]
  assert _strip_timing(ma) == _strip_timing(mb)
  assert ma[-1]["kind"] == "eval" and "vae" in ma[-1]
  # Resuming reuses the compiled step: one trace, one executable in all.
  assert generator_steps.TRACES["train_step"] - before == 1
  key = generator_steps.config_key(c.generator)
  step_fn = generator_steps.cached_train_step(key, ml100k.num_items)
  assert step_fn._cache_size() == 1
  pa = generator.restore_params(c, ml100k, straight)
  pb = generator.restore_params(c, ml100k, resumed)
  jax.tree.map(np.testing.assert_array_equal, pa, pb)
  # Top-M never holds a training-prefix item (the input is capped to 32
  # items; the mask uses the full prefix) nor the padding id.
  items = a["items"]
  end = ml100k.split_end("train")
  for u in range(ml100k.num_users):
    prefix = set(ml100k.items[ml100k.indptr[u]:end[u]].tolist())
    assert not prefix & set(items[u].tolist()) and 0 not in items[u]
  # A finished phase returns its file without work.
  before = dict(generator_steps.TRACES)
  mtime = os.path.getmtime(p2)
  assert generator.run_generator_phase(c, ml100k, resumed) == p2
  assert dict(generator_steps.TRACES) == before
  assert os.path.getmtime(p2) == mtime
  # Other training settings (here: the seed) cannot resume this checkpoint.
  os.remove(p2)
  c.seed = 1
  with pytest.raises(ValueError, match="other generator training settings"):
    generator.run_generator_phase(c, ml100k, resumed)


def test_padded_slots_do_not_change_the_loss(ml100k):
  # Same generator config as the resume test: reuses its compiled step.
  c = tiny_config(epochs=4, checkpoint_every=2, history_cap=32)
  g = c.generator
  indptr, items = input_pipeline.train_rows(ml100k, g.history_cap)
  tokens = input_pipeline.token_budget(np.diff(indptr), g.batch_size)
  step = generator_steps.cached_train_step(generator_steps.config_key(g),
                                      ml100k.num_items)
  users = np.arange(g.batch_size)
  valid = np.arange(g.batch_size) < 100
  b1 = input_pipeline.make_batch(indptr, items, users, valid, tokens)
  # Garbage in the padded slots 100..127 (in the unused entries).
  n = int((b1["ids"] > 0).sum())
  assert tokens - n > 200
  b2 = {k: v.copy() for k, v in b1.items()}
  b2["ids"][n:n + 200] = np.arange(1, 201)
  b2["seg"][n:n + 200] = 100 + np.arange(200) % 28
  outs = []
  for b in (b1, b2):
    state = generator_steps.init_state(g, ml100k.num_items, jax.random.key(0))
    new, sums = step(state, b, jax.random.key(2))
    outs.append((float(sums["loss"]), float(sums["count"]),
                 jax.tree.leaves(new["params"])))
  assert outs[0][1] == outs[1][1] == 100
  np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-6)
  for x, y in zip(outs[0][2], outs[1][2]):  # same update
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


def test_fixed_generator_seed_gives_one_hash_across_run_seeds(tiny_config):
  from diff4rec_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  ds = data_lib.load(tiny_config.data)

  def h(seed, gseed):
    c = tiny_config.copy_and_resolve_references()
    c.seed, c.generator.seed = seed, gseed
    return (generator.config_hash(c, ds), generator.train_hash(c, ds),
            generator.generator_seed(c))

  assert h(1, 0) == h(2, 0) == h(0, -1)
  assert h(1, -1) != h(0, -1)
  assert h(1, -1)[2] == 1


def test_top_m_with_history_items_when_asked():
  """exclude_history=False (augment.exclude_history): the top-M is the
  highest-scoring items whatever the user has seen (never the padding id)."""
  ds = hand_data([[1, 2, 3, 4, 5], [2, 4, 2, 6, 1], [1, 3, 1, 2]])
  c = tiny_config(top_m=4, inference_step=3, steps=5, prob_norm="all")
  params = generator_steps.init_params(c.generator, ds.num_items,
                                 jax.random.key(0))
  bias = np.zeros(ds.num_items + 1, np.float32)
  bias[[0, 1, 2, 3, 4, 5, 6]] = [500.0, 20.0, 100.0, 10.0, 50.0, 40.0, 30.0]
  out = params["vae"]["out"]
  params["vae"]["out"] = {"kernel": jnp.zeros_like(out["kernel"]),
                          "bias": jnp.asarray(bias)}
  items, _, _, _ = generator.infer_all(c, params, ds, exclude_history=False)
  assert items.tolist() == [[2, 4, 5, 6]] * 3
