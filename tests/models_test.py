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


@pytest.mark.parametrize("name", models.RECOMMENDERS)
def test_outputs_do_not_depend_on_left_padding(name, seqs):
  m = _model(name)
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


def test_dropout_only_in_training(seqs):
  m = _model("sasrec")
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
