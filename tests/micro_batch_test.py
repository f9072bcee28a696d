"""Micro-batched steps (config.train.micro_batch) give the one-pass result."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diff4rec_jax import config_lib
from diff4rec_jax import data as data_lib
from diff4rec_jax import models
from diff4rec_jax import input_pipeline
from diff4rec_jax import steps


def _batch(ds, rows, width, offset=0):
  inputs, targets = ds.train_arrays(width)
  sel = np.arange(offset, offset + rows)
  return {"inputs": jnp.asarray(inputs[sel]),
          "targets": jnp.asarray(targets[sel])}


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_micro_batched_train_step_equals_one_pass(tiny_config, name):
  c = tiny_config
  c.model.name = name
  c.model.dropout = 0.0          # no per-chunk random draws: exact compare
  c.data.max_len = 20
  ds = data_lib.load(c.data)
  model = models.get_model(c.model, ds.num_items, c.data.max_len)
  # SGD with lr 1: the update is minus the gradient, so the parameters
  # compare the gradients themselves. (Adam's first step is ~lr * sign(g):
  # it blows float noise in coordinates whose true gradient is 0, such as
  # SASRec's key bias under the softmax, up to ~lr * 1e-3, and the noise
  # differs between CPUs.)
  tx = optax.sgd(1.0)
  batch = _batch(ds, 32, c.data.max_len)
  aug = _batch(ds, 16, c.data.max_len, offset=100)
  batch.update(aug_inputs=aug["inputs"], aug_targets=aug["targets"])
  # Make some rows batch padding (all-zero targets), as a last batch has.
  batch["targets"] = batch["targets"].at[-3:].set(0)
  outs = []
  for micro in (0, 8):
    state = steps.init_state(model, tx, jax.random.key(0), c.data.max_len)
    step = steps.make_train_step(model, tx, "ce", ds.num_items, 0.5, micro)
    state, m = step(state, batch, jax.random.key(1))
    outs.append((jax.device_get(state["params"]), jax.device_get(m)))
  (p0, m0), (p1, m1) = outs
  assert set(m0) == set(m1) == {"loss", "loss_orig", "loss_aug"}
  for k in m0:
    np.testing.assert_allclose(m1[k], m0[k], rtol=1e-5)
  np.testing.assert_allclose(m0["loss"],
                             m0["loss_orig"] + 0.5 * m0["loss_aug"],
                             rtol=1e-6)
  p_init = jax.device_get(steps.init_state(
      model, tx, jax.random.key(0), c.data.max_len)["params"])
  g0 = jax.tree.map(lambda a, b: a - b, p0, p_init)   # minus the gradients
  g1 = jax.tree.map(lambda a, b: a - b, p1, p_init)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4,
                                                       atol=1e-7), g1, g0)
  # And the update moved the parameters (the comparison is not vacuous).
  moved = jax.tree.leaves(jax.tree.map(lambda g: float(np.abs(g).max()), g1))
  assert max(moved) > 1e-4


def test_micro_batched_eval_equals_one_pass(tiny_config):
  c = tiny_config
  ds = data_lib.load(c.data)
  model = models.get_model(c.model, ds.num_items, c.data.max_len)
  params = model.init(jax.random.key(3),
                      jnp.zeros((1, c.data.max_len), jnp.int32))["params"]
  evalset = input_pipeline.EvalSet.build(ds, "valid", c.data.max_len)
  widths = input_pipeline.bucket_widths(c)
  sums = []
  for micro in (0, 16):
    step = steps.make_eval_step(model, ds.num_items, c.train.eval_item_chunk,
                                True, micro)
    s = steps.zero_sums()
    for b in evalset.batches(64, widths):
      s = step(params, s, b)
    sums.append(jax.device_get(s))
  assert sums[0]["count"] == ds.num_users
  for k in sums[0]:
    np.testing.assert_allclose(sums[1][k], sums[0][k], rtol=1e-5)


def test_split_and_merge_rows_are_inverse_and_strided():
  x = jnp.arange(12 * 3).reshape(12, 3)
  s = steps.split_rows(x, 4)
  assert s.shape == (4, 3, 3)
  np.testing.assert_array_equal(s[1][:, 0], x[[1, 5, 9], 0])
  np.testing.assert_array_equal(steps.merge_rows(s), x)


def test_resolve_micro_batch():
  r = steps.resolve_micro_batch
  assert r(-1, 128, 1, "cpu") == 32      # width unknown: taken as 200
  assert r(-1, 128, 1, "gpu") == 0
  assert r(-1, 128, 1, "tpu") == 0
  assert r(-1, 32, 1, "cpu") == 0        # one chunk: nothing to split
  assert r(-1, 100, 1, "cpu") == 25      # the largest divisor <= 32
  assert r(-1, 128, 64, "cpu") == 0      # a chunk smaller than the mesh
  assert r(-1, 97, 1, "cpu") == 0        # only 1-row chunks divide it
  assert r(0, 128, 1, "cpu") == 0
  assert r(16, 128, 8, "gpu") == 16
  assert r(256, 128, 1, "cpu") == 0      # at least the batch: one pass
  with pytest.raises(ValueError, match=r"micro_batch=12 .*\(128\)"):
    r(12, 128, 1, "cpu")
  with pytest.raises(ValueError, match=r"device count \(8\)"):
    r(4, 128, 8, "cpu")


def test_auto_micro_batch_holds_at_most_6400_positions_per_chunk():
  r = steps.resolve_micro_batch
  widths = {w: r(-1, 128, 2, "cpu", width=w) for w in (16, 32, 50, 64, 128,
                                                     200, 400)}
  assert widths == {16: 0, 32: 0, 50: 0, 64: 64, 128: 32, 200: 32, 400: 16}
  assert r(-1, 256, 2, "cpu", width=64) == 64
  assert r(-1, 128, 2, "gpu", width=32) == 0
  # A fixed value does not depend on the width.
  assert r(16, 128, 2, "cpu", width=32) == 16
  m = steps.micro_batcher(-1, 128, 2)
  assert m(200) * 200 <= steps.AUTO_MICRO_TOKENS
  with pytest.raises(ValueError, match=r"micro_batch=12"):
    steps.micro_batcher(12, 128, 1)


def test_micro_batcher_picks_chunks_per_width(tiny_config):
  """A narrow batch runs in one pass and a wide one in chunks: the traced
  step of the wide one holds one more loop (the chunks' scan)."""
  c = tiny_config
  ds = data_lib.load(c.data)
  model = models.get_model(c.model, ds.num_items, c.data.max_len)
  tx = optax.sgd(0.1)
  state = steps.init_state(model, tx, jax.random.key(0), c.data.max_len)
  # 256 rows, 6,400 / width rows per chunk: one pass at width 20 (320
  # rows fit), chunks of 128 at width 50.
  assert c.data.max_len >= 50
  step = steps.make_train_step(model, tx, "ce", ds.num_items,
                               micro_batch=lambda w: steps.resolve_micro_batch(
                                   -1, 256, 1, "cpu", width=w))
  loops = {}
  for width in (20, 50):
    batch = {"inputs": jnp.ones((256, width), jnp.int32),
             "targets": jnp.ones((256, width), jnp.int32)}
    text = step.lower(state, batch, jax.random.key(1)).as_text()
    loops[width] = text.count("stablehlo.while")
  assert loops[50] == loops[20] + 1


@pytest.mark.parametrize("value", [-2, 24])
def test_bad_micro_batch_names_the_field(tiny_config, value):
  tiny_config.train.micro_batch = value     # 24 does not divide 64
  with pytest.raises(ValueError, match=r"config\.train\.micro_batch"):
    config_lib.validate(tiny_config)
