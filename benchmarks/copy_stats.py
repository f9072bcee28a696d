"""What the augmented copies of a run hold: how many items each replaced.

  python benchmarks/copy_stats.py <workdir>/augmented.npz [...]

For each file (`pool.build_pool`'s export: copies [U, K, L], orig [U, L],
sim [U, K]) prints the originals' length quartiles, the share of copies that
bring in no new item (with ratio r a copy of a sequence of N items replaces
round_half_up(r * N) of them, none when N < 0.5 / r, unless
`augment.min_replaced` sets a floor), and the share whose
similarity (Eq. 11) is 1, the ones an easy-first curriculum admits first.
With `--topm=<workdir>/generator/generator_topm.npz` (one per file, or one
for all) also the share of the copies' new items that are in their own
user's row of candidates: 1.000 unless the pool was fed another user's row.
"""

import argparse

import numpy as np


def _keyed(ids: np.ndarray, width: int) -> np.ndarray:
  """(row, id) keys row * width + id of [U, ...] ids (width > every id)."""
  rows = np.arange(ids.shape[0], dtype=np.int64)
  return rows.reshape((-1,) + (1,) * (ids.ndim - 1)) * width + ids


def _fresh(copies: np.ndarray, orig: np.ndarray, width: int) -> np.ndarray:
  """[U, K, L] bool: a copy's item that is not in its user's original row."""
  return (copies > 0) & ~np.isin(_keyed(copies, width),
                                 _keyed(orig, width)[orig > 0])


def new_items_per_copy(copies: np.ndarray, orig: np.ndarray) -> np.ndarray:
  """[U, K] number of a copy's items (non-zero entries, with repeats) that
  are not in its user's original row.

  Args:
    copies: [U, K, L] int, 0 = padding.
    orig: [U, L] int, 0 = padding.
  """
  width = int(max(copies.max(), orig.max())) + 1
  return _fresh(copies, orig, width).sum(axis=2)


def new_items_in_own_row(copies: np.ndarray, orig: np.ndarray,
                         cand: np.ndarray) -> tuple:
  """(in own row, all): the copies' new items (as `new_items_per_copy`
  counts them) and how many of them are in their user's row of `cand`
  [U, M] (0 = padding)."""
  width = int(max(copies.max(), orig.max(), cand.max())) + 1
  fresh = _fresh(copies, orig, width)
  own = np.isin(_keyed(copies, width)[fresh], _keyed(cand, width)[cand > 0])
  return int(own.sum()), int(fresh.sum())


def describe(path: str, topm: str = "") -> str:
  with np.load(path) as z:
    copies, orig, sim = z["copies"], z["orig"], z["sim"]
  new = new_items_per_copy(copies, orig)
  lens = (orig > 0).sum(axis=1)
  q = np.percentile(lens, [25, 50, 75])
  text = (f"{path}: {copies.shape[0]} users x {copies.shape[1]} copies; "
          f"original length quartiles {q[0]:.0f} / {q[1]:.0f} / {q[2]:.0f}; "
          f"copies with no new item {np.mean(new == 0):.3f}; mean new items "
          f"per copy {new.mean():.2f}; similarity 1 "
          f"{np.mean(np.abs(sim - 1) < 1e-6):.3f}")
  if topm:
    with np.load(topm) as z:
      own, total = new_items_in_own_row(copies, orig, z["items"])
    text += (f"; new items in their own user's candidates {own} of {total} "
             f"({topm})")
  return text


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("files", nargs="+")
  p.add_argument("--topm", action="append", default=[],
                 help="the top-M file of each file's candidates (once for "
                 "all, or once per file, in order)")
  args = p.parse_args()
  if len(args.topm) not in (0, 1, len(args.files)):
    p.error(f"{len(args.topm)} --topm for {len(args.files)} files")
  topms = args.topm * len(args.files) if len(args.topm) == 1 else args.topm
  for path, topm in zip(args.files, topms or [""] * len(args.files)):
    print(describe(path, topm))


if __name__ == "__main__":
  main()
