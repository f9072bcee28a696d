"""benchmarks/copy_stats.py: new items per copy, against a hand count."""

import numpy as np

from benchmarks import copy_stats


def test_new_items_per_copy_counts_items_missing_from_the_original(tmp_path):
  orig = np.array([[0, 3, 4, 5], [0, 0, 7, 8]])
  copies = np.array([
      [[0, 5, 3, 4], [0, 3, 9, 5], [0, 9, 9, 4]],   # 0 new, 1 new, 2 (repeat)
      [[0, 0, 8, 7], [0, 0, 3, 8], [0, 0, 7, 8]],   # 3 is user 0's, not 1's
  ])
  np.testing.assert_array_equal(copy_stats.new_items_per_copy(copies, orig),
                                [[0, 1, 2], [0, 1, 0]])
  path = tmp_path / "augmented.npz"
  np.savez(path, copies=copies, orig=orig,
           sim=np.array([[1.0, 0.9, 0.5], [1.0, 0.8, 1.0]]))
  text = copy_stats.describe(str(path))
  assert "2 users x 3 copies" in text
  assert "copies with no new item 0.500" in text
  assert "mean new items per copy 0.67" in text
  assert "similarity 1 0.500" in text


def test_new_items_in_own_row_counts_against_each_users_candidates():
  orig = np.array([[0, 3, 4, 5], [0, 0, 7, 8]])
  copies = np.array([
      [[0, 5, 3, 4], [0, 3, 9, 5], [0, 9, 12, 4]],  # new: 9, 9, 12
      [[0, 0, 8, 7], [0, 0, 3, 8], [0, 0, 7, 8]],   # new: 3
  ])
  cand = np.array([[9, 0], [12, 3]])   # 12 is user 1's candidate, not 0's
  assert copy_stats.new_items_in_own_row(copies, orig, cand) == (3, 4)
  assert copy_stats.new_items_in_own_row(copies, orig, cand[::-1]) == (1, 4)
