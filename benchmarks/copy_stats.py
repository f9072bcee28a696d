"""What the augmented copies of a run hold: how many items each replaced.

  python benchmarks/copy_stats.py <workdir>/augmented.npz [...]

For each file (`pool.build_pool`'s export: copies [U, K, L], orig [U, L],
sim [U, K]) prints the originals' length quartiles, the share of copies that
bring in no new item (with ratio r a copy of a sequence of N items replaces
round_half_up(r * N) of them, none when N < 0.5 / r, unless
`augment.min_replaced` sets a floor), and the share whose
similarity (Eq. 11) is 1, the ones an easy-first curriculum admits first.
"""

import argparse

import numpy as np


def new_items_per_copy(copies: np.ndarray, orig: np.ndarray) -> np.ndarray:
  """[U, K] number of a copy's items (non-zero entries, with repeats) that
  are not in its user's original row.

  Args:
    copies: [U, K, L] int, 0 = padding.
    orig: [U, L] int, 0 = padding.
  """
  u, k, _ = copies.shape
  width = int(max(copies.max(), orig.max())) + 1
  rows = np.arange(u, dtype=np.int64)
  orig_keys = np.unique((rows[:, None] * width + orig)[orig > 0])
  keys = rows[:, None, None] * width + copies
  fresh = (copies > 0) & ~np.isin(keys, orig_keys)
  return fresh.sum(axis=2).reshape(u, k)


def describe(path: str) -> str:
  with np.load(path) as z:
    copies, orig, sim = z["copies"], z["orig"], z["sim"]
  new = new_items_per_copy(copies, orig)
  lens = (orig > 0).sum(axis=1)
  q = np.percentile(lens, [25, 50, 75])
  return (f"{path}: {copies.shape[0]} users x {copies.shape[1]} copies; "
          f"original length quartiles {q[0]:.0f} / {q[1]:.0f} / {q[2]:.0f}; "
          f"copies with no new item {np.mean(new == 0):.3f}; mean new items "
          f"per copy {new.mean():.2f}; similarity 1 "
          f"{np.mean(np.abs(sim - 1) < 1e-6):.3f}")


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("files", nargs="+")
  for path in p.parse_args().files:
    print(describe(path))


if __name__ == "__main__":
  main()
