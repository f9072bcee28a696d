"""Reading, splitting and padding interaction data."""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from diff4rec_jax import data

PAIRS = b"1 10\n1 11\n1 12\n1 13\n2 20\n2 21\n2 22\n3 30\n3 31\n3 32\n3 10\n"
PER_USER = b"1 10 11 12 13\n2 20 21 22\n3 30 31 32 10\n"


def _write(tmp_path, name, raw, gz=False):
  p = tmp_path / name
  p.write_bytes(gzip.compress(raw) if gz else raw)
  return str(p)


def test_pair_and_per_user_formats_agree(tmp_path):
  a = data.read_interactions(_write(tmp_path, "a.txt", PAIRS))
  b = data.read_interactions(_write(tmp_path, "b.txt.gz", PER_USER, gz=True))
  for x in (a, b):
    assert x.user_ids.tolist() == [1, 2, 3]
    assert x.indptr.tolist() == [0, 4, 7, 11]
    assert x.items.tolist() == [10, 11, 12, 13, 20, 21, 22, 30, 31, 32, 10]
    assert x.num_items == 32


def test_leave_one_out_split(tmp_path):
  ds = data.read_interactions(_write(tmp_path, "a.txt", PAIRS))
  assert ds.targets("test").tolist() == [13, 22, 10]
  assert ds.targets("valid").tolist() == [12, 21, 32]
  inputs, targets = ds.train_arrays(max_len=3)
  # Training prefixes: [10, 11], [20], [30, 31]; pairs are prefix[:-1] ->
  # prefix[1:], so user 2 has none.
  assert inputs.tolist() == [[0, 0, 10], [0, 0, 0], [0, 0, 30]]
  assert targets.tolist() == [[0, 0, 11], [0, 0, 0], [0, 0, 31]]
  vin, vt = ds.eval_arrays("valid", 3)
  assert vin.tolist() == [[0, 10, 11], [0, 0, 20], [0, 30, 31]]
  assert vt.tolist() == [12, 21, 32]
  tin, tt = ds.eval_arrays("test", 2)
  assert tin.tolist() == [[11, 12], [20, 21], [31, 32]]
  assert tt.tolist() == [13, 22, 10]


@pytest.mark.parametrize("windows, rows", [(1, 2), (2, 3), (3, 4), (0, 4),
                                           (9, 4)])
def test_train_windows_cover_the_prefix_once(tmp_path, windows, rows):
  # User 1: 12 items -> training prefix 1..10 (9 pairs); user 2: 4 items ->
  # prefix 20, 21 (1 pair). L = 3: user 1's pairs fall in windows of 3, 3, 3.
  raw = "".join(f"1 {i}\n" for i in range(1, 13)) + "2 20\n2 21\n2 22\n2 23\n"
  ds = data.read_interactions(_write(tmp_path, "w.txt", raw.encode()))
  inputs, targets = ds.train_arrays(3, windows)
  assert inputs.shape == (rows, 3)
  assert inputs[:2].tolist() == [[7, 8, 9], [0, 0, 20]]   # rows 0..U-1 = users
  assert targets[:2].tolist() == [[8, 9, 10], [0, 0, 21]]
  pairs = sorted((int(a), int(b)) for a, b in zip(inputs.ravel(),
                                                  targets.ravel()) if b)
  want = [(i, i + 1) for i in range(10 - 3 * (rows - 1), 10)] + [(20, 21)]
  assert pairs == sorted(want)        # each pair once, newest windows first
  if windows in (0, 9):
    assert inputs[2:].tolist() == [[4, 5, 6], [1, 2, 3]]


def test_history_excludes_target_and_duplicates(tmp_path):
  # User 1 repeats item 5 and its test target is 5 again.
  raw = b"1 5\n1 6\n1 5\n1 7\n1 5\n"
  ds = data.read_interactions(_write(tmp_path, "r.txt", raw))
  indptr, items = ds.history_csr("test")
  assert items[indptr[0]:indptr[1]].tolist() == [6, 7]     # 5 is the target
  indptr, items = ds.history_csr("valid")
  assert items[indptr[0]:indptr[1]].tolist() == [5, 6]     # target 7


def test_prefix_csr_keeps_repeats_as_eval_arrays_pads_them(tmp_path):
  raw = b"1 5\n1 6\n1 5\n1 7\n1 5\n2 8\n2 9\n2 8\n"
  ds = data.read_interactions(_write(tmp_path, "r.txt", raw))
  indptr, items = ds.prefix_csr("valid")
  assert indptr.tolist() == [0, 3, 4]
  assert items.tolist() == [5, 6, 5, 8]          # targets 7 and 9 excluded
  inputs, _ = ds.eval_arrays("valid", 4)
  for u in range(2):
    row = inputs[u][inputs[u] > 0]
    assert row.tolist() == items[indptr[u]:indptr[u + 1]].tolist()


def test_left_pad_keeps_most_recent():
  items = np.arange(1, 11, dtype=np.int32)
  out = data.left_pad(items, np.array([0, 5]), np.array([5, 7]), 3)
  assert out.tolist() == [[3, 4, 5], [0, 6, 7]]
  assert out.dtype == np.int32


def test_csr_entries_gathers_rows_in_the_order_asked():
  indptr = np.array([0, 2, 2, 5])           # rows: [1, 2], [], [3, 4, 5]
  flat = np.array([1, 2, 3, 4, 5])
  row_of, vals = data.csr_entries(indptr, flat, np.array([2, 1, 0, 2]))
  assert row_of.tolist() == [0, 0, 0, 2, 2, 3, 3, 3]
  assert vals.tolist() == [3, 4, 5, 1, 2, 3, 4, 5]


def test_row_ranges_matches_a_loop():
  rng = np.random.default_rng(0)
  start = rng.integers(0, 50, 40)
  end = start + rng.integers(-3, 8, 40)      # some empty or reversed
  row_of, pos = data.row_ranges(start, end)
  want = [(i, p) for i in range(40) for p in range(start[i], end[i])]
  assert list(zip(row_of.tolist(), pos.tolist())) == want
  row_of, pos = data.row_ranges(np.array([3]), np.array([3]))
  assert row_of.size == pos.size == 0


def test_real_ml100k(data_dir):
  ds = data.read_interactions(os.path.join(data_dir, "ml-100k.txt"))
  assert ds.stats()["users"] == 943 and ds.stats()["actions"] == 100000
  inputs, targets = ds.train_arrays(50)
  assert inputs.shape == (943, 50) and inputs.dtype == np.int32
  # Each target is the next input (the first item is never a target).
  has = targets[:, :-1] > 0
  np.testing.assert_array_equal(inputs[:, 1:][has], targets[:, :-1][has])
  assert ((inputs > 0) == (targets > 0)).all()
  # Validation and test targets never appear in the training arrays' last
  # column unless the user really repeats them (ML-100K has no repeats).
  assert not (targets == ds.targets("valid")[:, None]).any()
  assert not (targets == ds.targets("test")[:, None]).any()


@pytest.mark.parametrize("raw, where", [
    (b"1 10\n1 x\n", ":2:"),
    (b"1 10\n1\n", ":2:"),
    (b"1 10\n1 0\n1 3\n", ":2:"),
    (b"1 10\n1 -3\n", ":2:"),
    (b"1 1.5\n", ":1:"),
    (b"", "empty"),
])
def test_malformed_files_name_file_and_line(tmp_path, raw, where):
  path = _write(tmp_path, "bad.txt", raw)
  with pytest.raises(data.DataError) as e:
    data.read_interactions(path)
  assert path in str(e.value) and where in str(e.value)


def test_short_users_error_or_logged_drop(tmp_path, caplog):
  path = _write(tmp_path, "s.txt", b"1 10\n1 11\n2 1\n2 2\n2 3\n")
  with pytest.raises(data.DataError, match="fewer than 3"):
    data.read_interactions(path)
  ds = data.read_interactions(path, drop_short=True)
  assert ds.user_ids.tolist() == [2]


def test_missing_file_says_where_it_looked(tmp_path):
  with pytest.raises(data.DataError) as e:
    data.resolve_path("beauty", str(tmp_path))
  msg = str(e.value)
  assert str(tmp_path) in msg and "prepare" in msg


def test_truncated_gzip(tmp_path):
  raw = gzip.compress(PAIRS * 50)
  path = _write(tmp_path, "t.txt.gz", raw[: len(raw) // 2])
  with pytest.raises(data.DataError, match="truncated"):
    data.read_interactions(path)


def test_data_does_not_import_the_datasets_package():
  # A fresh interpreter: what `import diff4rec_jax.data` pulls in by itself.
  code = ("import json, sys, diff4rec_jax.data; print(json.dumps(sorted("
          "m for m in sys.modules if m.startswith('diff4rec_jax'))))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, cwd=REPO, check=True,
                       env={**os.environ, "PYTHONPATH": REPO})
  mods = json.loads(out.stdout)
  assert "diff4rec_jax.data" in mods
  assert not [m for m in mods if m.startswith("diff4rec_jax.datasets")], mods
  assert "diff4rec_jax.prepare" not in mods
  assert "diff4rec_jax.synthetic" not in mods
