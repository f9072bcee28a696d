"""Tests for the SYNTHETIC Steam-shaped generator (benchmarks only)."""

import gzip
import json
import os

import numpy as np
import pytest

from diff4rec_jax import data
from diff4rec_jax.datasets import synthetic

SCALE = 0.01  # 2,814 users, 130 items, 34,850 actions


@pytest.fixture(scope="module")
def small():
  return synthetic.generate(scale=SCALE, seed=0)


def test_shape_matches_scaled_steam(small):
  assert small.num_users == round(synthetic.STEAM_USERS * SCALE) == 2814
  assert small.num_items == round(synthetic.STEAM_ITEMS * SCALE) == 130
  assert small.users.size == round(synthetic.STEAM_ACTIONS * SCALE) == 34850
  # Users 1..U contiguous and ascending; every item id 1..I occurs.
  assert small.users[0] == 1 and small.users[-1] == small.num_users
  assert (np.diff(small.users) >= 0).all()
  assert np.array_equal(np.unique(small.users), np.arange(1, 2815))
  assert np.array_equal(np.unique(small.items), np.arange(1, 131))


def test_lengths_are_steam_like(small):
  lengths = np.bincount(small.users)[1:]
  assert lengths.min() == synthetic.MIN_LEN
  assert lengths.mean() == pytest.approx(12.38, abs=0.01)
  # A long right tail: median well below the mean, a max many times it.
  assert np.median(lengths) < lengths.mean() - 2
  assert lengths.max() > 4 * lengths.mean()


def test_item_popularity_is_zipf_like(small):
  counts = np.sort(np.bincount(small.items)[1:])[::-1]
  top10 = counts[:13].sum() / counts.sum()
  # Uniform popularity would give 10%; Zipf(a=1) about 55% before repeats
  # are resampled away.
  assert top10 > 0.35
  # Rank-frequency is close to a power law: log-log slope in [-1.3, -0.5]
  # over the head (the tail is flattened by the no-repeat rule).
  r = np.arange(1, 41)
  slope = np.polyfit(np.log(r), np.log(counts[:40]), 1)[0]
  assert -1.3 < slope < -0.5


def test_no_repeats_within_a_user(small):
  assert small.repeats == 0
  key = small.users * (small.num_items + 1) + small.items
  assert np.unique(key).size == key.size


def test_deterministic_per_seed():
  a = synthetic.generate(scale=0.002, seed=3)
  b = synthetic.generate(scale=0.002, seed=3)
  c = synthetic.generate(scale=0.002, seed=4)
  assert np.array_equal(a.users, b.users) and np.array_equal(a.items, b.items)
  assert not np.array_equal(a.items, c.items)


def test_written_file_is_readable_and_labelled_synthetic(tmp_path):
  path = synthetic.write_synthetic(str(tmp_path), scale=0.002, seed=1)
  assert path == str(tmp_path / data.DATASET_FILES["synthetic-steam"])
  ds = data.read_interactions(path, name="synthetic-steam")
  mem = synthetic.generate(scale=0.002, seed=1)
  assert np.array_equal(ds.items, mem.items)
  assert np.array_equal(ds.user_ids, np.arange(1, mem.num_users + 1))
  st = json.loads((tmp_path / "synthetic-steam.stats.json").read_text())
  assert st["synthetic"] is True and "SYNTHETIC" in st["note"]
  assert {k: st[k] for k in ("users", "items", "actions", "min_len")} == {
      k: ds.stats()[k] for k in ("users", "items", "actions", "min_len")}
  with gzip.open(path, "rt") as f:
    assert f.readline() == f"1 {mem.items[0]}\n"
  assert sorted(os.listdir(tmp_path)) == ["synthetic-steam.stats.json",
                                          "synthetic-steam.txt.gz"]
