"""The three recommenders: shapes, causality, padding invariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from diff4rec_jax import models

N = 50


def _model(name, max_len=12):
  c = base.get_config()
  c.model.name = name
  c.model.hidden = 16
  c.model.num_heads = 2
  return models.get_model(c.model, N, max_len)


@pytest.fixture(scope="module")
def seqs():
  rng = np.random.default_rng(0)
  s = rng.integers(1, N + 1, (3, 12)).astype(np.int32)
  s[0, :7] = 0
  s[1, :2] = 0
  return jnp.array(s)


@pytest.mark.parametrize("name", models.RECOMMENDERS)
def test_shapes_and_last_only(name, seqs):
  m = _model(name)
  params = m.init(jax.random.key(0), seqs)
  h = m.apply(params, seqs)
  assert h.shape == (3, 12, 16) and h.dtype == jnp.float32
  last = m.apply(params, seqs, last_only=True)
  assert last.shape == (3, 1, 16)
  np.testing.assert_allclose(last[:, 0], h[:, -1], rtol=1e-5, atol=1e-5)
  assert models.item_table(params["params"]).shape == (N + 1, 16)


@pytest.mark.parametrize("name, positions", [
    ("sasrec", "newest"), ("sasrec", "oldest"), ("gru4rec", None),
    ("caser", None)])
def test_outputs_do_not_depend_on_left_padding(name, positions, seqs):
  m = _model(name)
  if positions:
    m = m.clone(positions=positions)
  params = m.init(jax.random.key(0), seqs)
  full = m.apply(params, seqs)
  cut = m.apply(params, seqs[:, 7:])        # row 0 has 5 items, all kept
  np.testing.assert_allclose(cut[0], full[0, 7:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", models.RECOMMENDERS)
def test_causal(name, seqs):
  m = _model(name)
  params = m.init(jax.random.key(0), seqs)
  changed = seqs.at[:, 9].set(1)
  a, b = m.apply(params, seqs), m.apply(params, changed)
  np.testing.assert_allclose(a[:, :9], b[:, :9], rtol=1e-5, atol=1e-5)
  assert not np.allclose(a[2, 9:], b[2, 9:])


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "caser"])
def test_dropout_only_in_training(seqs, name):
  m = _model(name)
  params = m.init(jax.random.key(0), seqs)
  a = m.apply(params, seqs, train=True, rngs={"dropout": jax.random.key(1)})
  b = m.apply(params, seqs, train=True, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(m.apply(params, seqs), m.apply(params, seqs))


def test_unknown_model_name():
  c = base.get_config()
  c.model.name = "bert"
  with pytest.raises(ValueError, match="config.model.name"):
    models.get_model(c.model, N, 10)


def test_init_std_sets_dense_kernels_only():
  """model.init_std = s draws SASRec's dense kernels from N(0, s^2) (the
  SASRec+ recipe); 0 keeps flax's LeCun normal (std 1/sqrt(fan_in))."""
  c = base.get_config()
  c.model.hidden = 64
  seq = jnp.zeros((1, 10), jnp.int32)
  kernels = {}
  for std in (0.0, 0.02):
    c.model.init_std = std
    m = models.get_model(c.model, num_items=500, max_len=10)
    p = m.init(jax.random.key(0), seq)["params"]
    kernels[std] = np.concatenate([
        np.ravel(p[blk][name]["kernel"]) for blk in ("attn_0", "attn_1")
        for name in ("query", "key", "value", "out")] + [
            np.ravel(p["ffn_0"][fc]["kernel"]) for fc in ("fc1", "fc2")])
    # The embeddings keep their own N(0, 0.02^2) either way.
    assert abs(np.std(p["item_embed"]["embedding"]) - 0.02) < 0.002
  assert abs(np.std(kernels[0.02]) - 0.02) < 0.001
  assert abs(np.std(kernels[0.0]) - 64 ** -0.5) < 0.01


def test_init_std_out_of_range_is_named():
  from diff4rec_jax import config_lib  # pylint: disable=g-import-not-at-top
  c = base.get_config()
  c.model.init_std = -0.1
  with pytest.raises(ValueError, match="model.init_std"):
    config_lib.validate(c)


@pytest.mark.parametrize("length", [128, 70])
def test_causal_attention_blocks_give_the_same_outputs(length):
  """model.attn_blocks: the blocked causal attention equals the full one
  (forward, last_only and gradients; dropout off) at a width that splits
  into 4 blocks of 32 and one that splits into 2 uneven blocks."""
  c = base.get_config()
  c.model.hidden, c.model.num_heads, c.model.dropout = 32, 2, 0.0
  rng = np.random.default_rng(1)
  seq = rng.integers(1, N + 1, (3, length)).astype(np.int32)
  seq[0, :length // 2] = 0            # left padding
  seq = jnp.asarray(seq)
  # A random projection of the outputs (a sum of squares of layer-normed
  # outputs would be constant, its gradient pure rounding noise).
  w = jnp.asarray(rng.normal(size=(3, length, 32)), jnp.float32)
  out, grads, dots = {}, {}, {}
  for blocks in (1, 4):
    c.model.attn_blocks = blocks
    m = models.get_model(c.model, N, 200)
    p = m.init(jax.random.key(0), seq)["params"]
    dots[blocks] = str(jax.make_jaxpr(lambda p, m=m: m.apply(
        {"params": p}, seq))(p)).count("dot_general")
    out[blocks] = (m.apply({"params": p}, seq),
                   m.apply({"params": p}, seq, last_only=True))
    grads[blocks] = jax.grad(lambda p, m=m, w=w: jnp.sum(m.apply(
        {"params": p}, seq, train=True, rngs={"dropout": jax.random.key(2)})
        * w))(p)
  # The blocked path ran: 2 attention products per extra block and layer.
  n = min(4, length // 32)
  assert dots[4] == dots[1] + 2 * 2 * (n - 1), dots
  for a, b in zip(out[1], out[4]):
    np.testing.assert_allclose(a, b, atol=2e-5)
  # Tolerance on the scale of the whole gradient: some leaves (the key
  # biases: softmax ignores a constant shift) are zero up to rounding.
  scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads[1]))
  for a, b in zip(jax.tree.leaves(grads[1]), jax.tree.leaves(grads[4])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)


def test_positions_oldest_counts_from_the_first_item(seqs):
  """positions='oldest': a 5-item row uses position rows 0..4 of the table
  (zeroing rows 5.. leaves it alone, zeroing row 0 does not); 'newest' uses
  the last 5 rows (max_len - 5 .. max_len - 1)."""
  row = seqs[:1]                       # 7 pads, then 5 items; max_len 12
  for positions, unused, used in (("oldest", slice(5, None), 0),
                                  ("newest", slice(0, 7), 11)):
    m = _model("sasrec").clone(positions=positions)
    p = m.init(jax.random.key(0), row)
    base_out = m.apply(p, row)[0, 7:]
    table = p["params"]["pos_embed"]["embedding"]
    zero = lambda idx, t=table, p=p: {"params": {
        **p["params"], "pos_embed": {"embedding": t.at[idx].set(0.0)}}}
    np.testing.assert_allclose(m.apply(zero(unused), row)[0, 7:], base_out,
                               rtol=1e-6, atol=1e-6)
    assert not np.allclose(m.apply(zero(used), row)[0, 7:], base_out,
                           atol=1e-4), positions


@pytest.mark.parametrize("mode", ["shared", "per_row"])
def test_attention_dropout_shared_or_per_row(mode):
  """attn_dropout='shared' drops the same attention entries in every row of
  a batch (two equal rows stay equal); 'per_row' draws each row's own."""
  from diff4rec_jax.models import sasrec  # pylint: disable=g-import-not-at-top
  att = sasrec.SelfAttention(num_heads=1, features=8, dropout=0.5,
                             attn_dropout=mode)
  x = jnp.tile(jax.random.normal(jax.random.key(0), (1, 6, 8)), (2, 1, 1))
  mask = jnp.tril(jnp.ones((6, 6), bool))[None, None]
  p = att.init(jax.random.key(1), x, x, mask, True)
  y = att.apply(p, x, x, mask, False, rngs={"dropout": jax.random.key(2)})
  assert np.allclose(y[0], y[1]) == (mode == "shared")
  assert not np.allclose(y, att.apply(p, x, x, mask, True))  # dropout ran


def test_qkv_init_torch_is_xavier_uniform_of_the_packed_projection():
  """qkv_init='torch': query/key/value kernels ~ U(-b, b), b = sqrt(6 / 4D)
  (torch's Xavier-uniform over the [3D, D] in_proj); the output and FFN
  kernels keep init_std."""
  c = base.get_config()
  c.model.hidden, c.model.init_std, c.model.qkv_init = 64, 0.02, "torch"
  m = models.get_model(c.model, num_items=500, max_len=10)
  p = m.init(jax.random.key(0), jnp.zeros((1, 10), jnp.int32))["params"]
  qkv = np.concatenate([np.ravel(p[b][n]["kernel"]) for b in ("attn_0",
                        "attn_1") for n in ("query", "key", "value")])
  bound = (6 / (4 * 64)) ** 0.5
  assert np.abs(qkv).max() <= bound and np.abs(qkv).max() > 0.95 * bound
  assert abs(np.std(qkv) - bound / 3 ** 0.5) < 0.003
  assert abs(np.std(p["attn_0"]["out"]["kernel"]) - 0.02) < 0.002


def _dot_operand_dtypes(closed):
  """(lhs, rhs, out) dtypes of every dot_general in a jaxpr, nested ones
  included."""
  out = []
  for eqn in closed.jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      out.append(tuple(str(v.aval.dtype) for v in (*eqn.invars, *eqn.outvars)))
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      out += _dot_operand_dtypes(jax.extend.core.ClosedJaxpr(sub, ()))
  return out


def test_bfloat16_matmuls_keep_float32_parameters_and_outputs(seqs):
  """model.dtype='bfloat16': every SASRec product takes bfloat16 operands
  (seen in the jaxpr) and returns float32; the parameters (same tree as
  float32, so checkpoints are interchangeable), outputs and gradients stay
  float32, and the outputs agree with float32 to bfloat16's precision."""
  f32 = _model("sasrec")
  bf16 = f32.clone(dtype="bfloat16")
  p = f32.init(jax.random.key(0), seqs)
  p16 = bf16.init(jax.random.key(0), seqs)
  assert jax.tree.structure(p) == jax.tree.structure(p16)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(p16))
  a, b = f32.apply(p, seqs), bf16.apply(p, seqs)
  assert b.dtype == jnp.float32
  assert not np.array_equal(a, b)
  np.testing.assert_allclose(b, a, atol=0.05 * float(np.abs(a).max()))
  dots = _dot_operand_dtypes(jax.make_jaxpr(lambda q: bf16.apply(q, seqs))(p))
  assert len(dots) >= 8 and set(dots) == {
      ("bfloat16", "bfloat16", "float32")}, dots
  dots = _dot_operand_dtypes(jax.make_jaxpr(lambda q: f32.apply(q, seqs))(p))
  assert set(dots) == {("float32", "float32", "float32")}, dots
  g = jax.grad(lambda q: bf16.apply(q, seqs, train=True, rngs={
      "dropout": jax.random.key(1)}).sum())(p)
  assert all(x.dtype == jnp.float32 and np.isfinite(x).all()
             for x in jax.tree.leaves(g))
