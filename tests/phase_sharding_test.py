"""The generator and augmentation phases give the same results on 1 and 8 devices.

Each run is a subprocess with 1 or 8 fake CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=N`, see sharding_test.py).
A run (a) trains the generator for two epochs on ML-100K (tiny sizes) through
`generator.run_generator_phase`, recording each batch's device count, and
reads its metrics and top-M file; (b) augments ML-100K's training prefixes
with seeded random candidates (`pool.augment_all`) and scores the copies
(`pool.similarity_all`, `pool.score_all`). Batch sizes that are
internal details (inference, augmentation) are not multiples of 8, so the
8-device runs also exercise their rounding up.
"""

import json
import textwrap

import numpy as np
import pytest

from conftest import run_driver_on_devices

DRIVER = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, sys.argv[1])
    import jax
    import numpy as np
    from configs import base
    from diff4rec_jax import generator, pool
    from diff4rec_jax import data as data_lib

    data_dir, workdir, out = sys.argv[2:5]
    ds = data_lib.read_interactions(os.path.join(data_dir, "ml-100k.txt"),
                                    "ml-100k")
    result = {"devices": jax.device_count(), "batch_devices": set()}
    place_batch = generator.place_batch

    def recording_place_batch(batch, mesh):
      placed = place_batch(batch, mesh)
      per_user = placed["valid" if "valid" in placed else "users"]
      result["batch_devices"].add(len(per_user.sharding.device_set))
      return placed

    generator.place_batch = recording_place_batch

    # (a) the generator phase.
    c = base.get_config()
    g = c.generator
    g.latent_size, g.encoder_hidden, g.decoder_hidden = 8, (16,), ()
    g.denoiser_hidden, g.top_m, g.epochs = (16,), 10, 2
    g.batch_size, g.infer_batch_size = 128, 300   # 300 -> 304 on 8 devices
    g.kl_anneal_steps, g.bag_chunk, g.history_cap = 10, 32, 32
    if jax.device_count() > 1:
      g.batch_size = 100
      try:
        generator.run_generator_phase(c, ds, workdir + "_bad_batch")
      except ValueError as e:
        result["bad_batch_error"] = str(e)
      g.batch_size = 128
    path = generator.run_generator_phase(c, ds, workdir)
    topm = generator.load_topm(path)
    result["metrics"] = [json.loads(l) for l in
                         open(os.path.join(workdir, generator.METRICS_FILE))]
    result["batch_devices"] = sorted(result["batch_devices"])
    np.savez(out + ".npz", items=topm["items"], probs=topm["probs"])

    # (b) augmentation and similarities.
    max_len = 20
    end = ds.split_end("train")
    seqs = data_lib.left_pad(ds.items, ds.indptr[:-1], end, max_len)
    lengths = np.minimum(end - ds.indptr[:-1], max_len)
    rng = np.random.default_rng(0)
    u = ds.num_users
    cand = np.stack([rng.choice(np.arange(1, ds.num_items + 1), 12,
                                replace=False) for _ in range(u)])
    prob = rng.dirichlet(np.ones(12), u).astype(np.float32)
    emb = rng.normal(size=(ds.num_items + 1, 16)).astype(np.float32)
    key = jax.random.key(3)
    kw = dict(num_copies=3, ratio=0.3, temperature=0.7, batch_size=250)
    copies = pool.augment_all(key, seqs, lengths, cand, prob, **kw)
    sim = pool.similarity_all(emb, seqs, copies, lengths,
                                    batch_size=250)
    scored = pool.score_all(key, emb, seqs, lengths, cand, prob, **kw)
    np.savez(out + ".aug.npz", copies=copies, sim=sim, scored=scored)
    with open(out, "w") as f:
      json.dump(result, f)
""")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
  """{devices: (json result, top-M npz, augmentation npz)} for 1 and 8."""
  outs = run_driver_on_devices(tmp_path_factory.mktemp("phase_sharding"),
                               DRIVER, data_dir)
  return {n: (json.loads(out.read_text()), dict(np.load(str(out) + ".npz")),
              dict(np.load(str(out) + ".aug.npz")))
          for n, out in outs.items()}


def test_runs_use_the_devices_they_were_given(runs):
  assert runs[1][0]["devices"] == 1 and runs[1][0]["batch_devices"] == [1]
  assert runs[8][0]["devices"] == 8 and runs[8][0]["batch_devices"] == [8]


def test_generator_losses_and_validation_match(runs):
  one, eight = runs[1][0]["metrics"], runs[8][0]["metrics"]
  train = lambda m: [r for r in m if r["kind"] == "train"]
  assert [r["epoch"] for r in train(one)] == [1, 2]
  assert [r["step"] for r in train(eight)] == [r["step"] for r in train(one)]
  for a, b in zip(train(one), train(eight)):
    for k in ("loss", "nll", "kl", "noise", "beta"):
      np.testing.assert_allclose(b[k], a[k], rtol=1e-4, err_msg=k)
  ev1, ev8 = one[-1], eight[-1]
  assert ev1["kind"] == ev8["kind"] == "eval"
  for model in ("generator", "vae"):
    for k, v in ev1[model].items():  # one user's rank flip moves <= 1/U
      assert abs(ev8[model][k] - v) <= 1.01 / 943, (model, k)


def test_top_m_items_match_up_to_ties(runs):
  one, eight = runs[1][1], runs[8][1]
  assert one["items"].shape == eight["items"].shape == (943, 10)
  np.testing.assert_allclose(eight["probs"], one["probs"], rtol=1e-4,
                             atol=1e-6)
  differ = one["items"] != eight["items"]
  # Items may differ only where the two runs' probabilities at that rank tie.
  gap = np.abs(one["probs"] - eight["probs"])[differ]
  assert np.all(gap <= 1e-6), gap.max()
  assert differ.mean() < 0.01


def test_copies_equal_and_similarities_match(runs):
  one, eight = runs[1][2], runs[8][2]
  assert one["copies"].shape == (943, 3, 20)
  np.testing.assert_array_equal(eight["copies"], one["copies"])
  np.testing.assert_allclose(eight["sim"], one["sim"], atol=1e-5)
  np.testing.assert_allclose(eight["scored"], one["scored"], atol=1e-5)
  np.testing.assert_allclose(one["scored"], one["sim"], atol=1e-5)


def test_generator_batch_not_divisible_by_devices_is_named(runs):
  msg = runs[8][0]["bad_batch_error"]
  assert "config.generator.batch_size=100" in msg
  assert "number of devices (8)" in msg
