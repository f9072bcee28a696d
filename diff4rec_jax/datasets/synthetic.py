"""SYNTHETIC Steam-scale interactions, for speed and memory benchmarks only.

    python -m diff4rec_jax.datasets.synthetic --data_dir=data \\
        [--scale=1.0 --seed=0]

(`python -m diff4rec_jax.synthetic`, the old name of this command, still
works.) The real Steam file of the paper (281,428 users, 13,044 items,
3,485,022 actions) is not staged here. This module makes a stand-in with the
same shape so that throughput, memory and compile behaviour can be measured
at Steam scale: the same number of users, items and actions, a Zipf-like item
popularity and a Steam-like length distribution (at least 5 actions a user,
mean 12.4, a long lognormal tail). It contains no real behaviour: item order
within a user is random, so any accuracy measured on it is meaningless.
NEVER report results on it as recommendation quality.

Everything is vectorized numpy (no Python loop over users or actions) and
deterministic given (scale, seed, zipf_a). `generate` returns the arrays in
memory; `write_synthetic` writes `synthetic-steam.txt.gz` in the pair format
(atomically) and `synthetic-steam.stats.json` marked `"synthetic": true`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Optional

import numpy as np

from diff4rec_jax import data
from diff4rec_jax.datasets import raw as raw_lib
from diff4rec_jax.datasets import writers

# The paper's Table 1 row for Steam, which scale=1 reproduces exactly.
STEAM_USERS = 281_428
STEAM_ITEMS = 13_044
STEAM_ACTIONS = 3_485_022
MIN_LEN = 5

SYNTHETIC_NOTE = ("SYNTHETIC data shaped like Steam (users/items/actions, "
                  "Zipf-like popularity, length distribution); for speed and "
                  "memory benchmarks only, never for recommendation quality.")


@dataclasses.dataclass
class SyntheticData:
  """A synthetic interaction set in pair order.

  Attributes:
    users: [n] int64 user ids 1..num_users, contiguous and ascending.
    items: [n] int64 item ids 1..num_items ("time" order within a user).
    num_users: U.
    num_items: I (every id 1..I occurs at least once).
    repeats: rows that repeat an item earlier in the same user (few or 0).
  """
  users: np.ndarray
  items: np.ndarray
  num_users: int
  num_items: int
  repeats: int


def _lengths(rng: np.random.Generator, num_users: int, num_actions: int,
             max_len: int, sigma: float) -> np.ndarray:
  """[U] lengths >= MIN_LEN, <= max_len, summing to num_actions if possible.

  The part above MIN_LEN is lognormal (Steam's long tail), scaled so the total
  is exact; the rounding remainder goes to the users with the largest
  fractional parts.
  """
  extra_total = num_actions - num_users * MIN_LEN
  if extra_total < 0:
    raise ValueError(f"num_actions={num_actions} is below {MIN_LEN} per user "
                     f"for {num_users} users")
  x = rng.lognormal(mean=0.0, sigma=sigma, size=num_users)
  x *= extra_total / x.sum()
  extra = np.minimum(np.floor(x).astype(np.int64), max_len - MIN_LEN)
  rest = extra_total - int(extra.sum())
  frac = np.where(extra < max_len - MIN_LEN, x - np.floor(x), -1.0)
  # One more to the `rest` largest fractions; repeat while capped users
  # leave some over (a few rounds at most, never a loop over users).
  while rest > 0:
    room = extra < max_len - MIN_LEN
    if not room.any():
      break
    k = min(rest, int(room.sum()))
    top = np.argsort(-np.where(room, frac, -np.inf), kind="stable")[:k]
    extra[top] += 1
    frac[top] = -1.0
    rest -= k
  return extra + MIN_LEN


def _zipf_probs(num_items: int, a: float) -> np.ndarray:
  p = 1.0 / np.arange(1, num_items + 1, dtype=np.float64) ** a
  return p / p.sum()


def _duplicates(users: np.ndarray, items: np.ndarray) -> np.ndarray:
  """Positions whose (user, item) already occurred at an earlier position."""
  order = np.lexsort((np.arange(users.size), items, users))
  su, si = users[order], items[order]
  dup = np.zeros(users.size, dtype=bool)
  dup[1:] = (su[1:] == su[:-1]) & (si[1:] == si[:-1])
  return order[dup]


def generate(scale: float = 1.0, seed: int = 0, zipf_a: float = 1.0,
             sigma: float = 1.1, num_users: Optional[int] = None,
             num_items: Optional[int] = None,
             num_actions: Optional[int] = None,
             max_len: int = 2000) -> SyntheticData:
  """SYNTHETIC Steam-like interactions, in memory.

  Args:
    scale: multiplies Steam's users, items and actions (1.0 = full size).
    seed: the only source of randomness; same arguments -> same arrays.
    zipf_a: popularity exponent; item of popularity rank r has p ~ r^-a.
    sigma: lognormal sigma of the lengths above MIN_LEN (tail weight).
    num_users, num_items, num_actions: override the scaled sizes.
    max_len: longest sequence (also capped at half the items, so a user
      never needs more distinct items than exist).
  Returns:
    SyntheticData with users [n], items [n] in pair order.
  """
  nu = num_users or max(1, round(STEAM_USERS * scale))
  ni = num_items or max(20, round(STEAM_ITEMS * scale))
  na = num_actions or max(nu * MIN_LEN, round(STEAM_ACTIONS * scale))
  max_len = max(MIN_LEN, min(max_len, ni // 2))
  rng = np.random.default_rng(seed)
  lengths = _lengths(rng, nu, na, max_len, sigma)
  users = np.repeat(np.arange(1, nu + 1, dtype=np.int64), lengths)
  # Popularity rank -> item id is a random permutation, so ids carry no rank.
  rank_to_item = rng.permutation(ni).astype(np.int64) + 1
  cdf = np.cumsum(_zipf_probs(ni, zipf_a))
  cdf[-1] = 1.0

  def draw(n, zipf):
    if zipf:
      return rank_to_item[np.searchsorted(cdf, rng.random(n), side="right")]
    return rng.integers(1, ni + 1, size=n, dtype=np.int64)

  items = draw(users.size, True)
  # Resample repeats within a user: Zipf first, then uniform, which
  # converges fast even for long users that hold most popular items.
  for rnd in range(40):
    dup = _duplicates(users, items)
    if dup.size == 0:
      break
    items[dup] = draw(dup.size, rnd < 8)
  # Every item id must occur (num_items = max id, contiguous ids). A missing
  # item appears nowhere, so putting it on a random row adds no repeat.
  seen = np.zeros(ni + 1, dtype=bool)
  seen[items] = True
  missing = np.flatnonzero(~seen[1:]) + 1
  if missing.size:
    pos = rng.choice(items.size, size=missing.size, replace=False)
    items[pos] = missing
  repeats = int(_duplicates(users, items).size)
  return SyntheticData(users, items, nu, ni, repeats)


def stats(ds: SyntheticData) -> dict:
  """Table-1 statistics of a synthetic set, labelled synthetic."""
  out = raw_lib.sequence_stats(ds.users, ds.num_items)
  out.update({"synthetic": True, "note": SYNTHETIC_NOTE,
              "repeat_actions": ds.repeats})
  return out


def write_synthetic(data_dir: str, scale: float = 1.0, seed: int = 0,
                    zipf_a: float = 1.0, filename: str = "",
                    compresslevel: int = 6) -> str:
  """Generates and writes the SYNTHETIC set; returns the pair file's path.

  Writes `<data_dir>/synthetic-steam.txt.gz` (or `filename`) atomically and
  `<stem>.stats.json` beside it with the generation arguments.
  """
  t0 = time.time()
  ds = generate(scale=scale, seed=seed, zipf_a=zipf_a)
  path = os.path.join(data_dir,
                      filename or data.DATASET_FILES["synthetic-steam"])
  writers.write_pairs(path, ds.users, ds.items, compresslevel=compresslevel)
  st = stats(ds)
  st.update({"dataset": "synthetic-steam", "file": os.path.basename(path),
             "scale": scale, "seed": seed, "zipf_a": zipf_a,
             "seconds": round(time.time() - t0, 2)})
  stem = os.path.basename(path).split(".txt")[0]
  writers.write_json(os.path.join(data_dir, f"{stem}.stats.json"), st)
  return path


def _define_flags():
  """Defines the command's flags on absl's global FLAGS."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("data_dir", None, "Output folder (default "
                      "$DIFF4REC_DATA_DIR or ./data).")
  flags.DEFINE_float("scale", 1.0, "Fraction of Steam's size (1.0: 281,428 "
                     "users, 13,044 items, 3,485,022 actions).")
  flags.DEFINE_integer("seed", 0, "Random seed (output is deterministic).")
  flags.DEFINE_float("zipf_a", 1.0, "Item popularity exponent.")


def main(argv):
  """Writes the synthetic set the flags describe and prints its path."""
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  fl = flags.FLAGS
  print(f"Writing SYNTHETIC Steam-shaped data (benchmarks only, not a "
        f"quality dataset), scale={fl.scale}, seed={fl.seed}.")
  path = write_synthetic(fl.data_dir or data.default_data_dir(),
                         scale=fl.scale, seed=fl.seed, zipf_a=fl.zipf_a)
  print(path)


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)
