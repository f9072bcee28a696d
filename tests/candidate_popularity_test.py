"""benchmarks/candidate_popularity.py: ranks and (weighted) shares."""

import numpy as np

from benchmarks import candidate_popularity as cp


def test_ranks_and_weighted_shares():
  # Item 3 seen 3 times, item 1 twice, item 2 once, item 4 never.
  rank = cp.popularity_ranks(np.array([3, 1, 3, 2, 1, 3]), 4)
  assert rank[3] == 0 and rank[1] == 1 and rank[2] == 2 and rank[4] == 3
  assert rank[0] == 4                       # padding: least popular
  ranks = np.array([0, 1, 150, 2000])
  text = cp.describe("x", ranks)
  assert "share in the top 100 / 1,000 items 0.500 / 0.750" in text
  # All weight on the rank-2000 entry: every share is 0, quartiles 2000.
  text = cp.describe("x", ranks, np.array([0.0, 0.0, 0.0, 1.0]))
  assert "quartiles 2000 / 2000 / 2000" in text and "0.000 / 0.000" in text


def test_target_hits_own_rows_against_the_previous_users():
  items = np.array([[1, 2], [3, 4], [5, 6]])
  # Users 0 and 2 find their target in their own row; user 1's target (2)
  # is in user 0's row, the previous one.
  assert cp.target_hits(items, np.array([2, 2, 6])) == (2 / 3, 1 / 3)
  # A misaligned file: every target one row down.
  assert cp.target_hits(items, np.array([5, 1, 3])) == (0.0, 1.0)
