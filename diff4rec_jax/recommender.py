"""The serving object: a trained recommender's parameters, its ids and its
users' histories, with top-k and scoring methods (`Recommender`).

`from_workdir` builds one from a run's workdir; `export.load_export` from an
export folder; `recommend.load` takes either, and `recommend` is the command
line. Scores are the recommender's logits (hidden state . item embedding).
Users are scored in fixed-size batches (the last one padded) sorted by
length and cut to the run's `train.length_buckets` widths, one compiled call
per batch (`metrics.top_k_unseen`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from diff4rec_jax import data as data_lib
from diff4rec_jax import errors
from diff4rec_jax import metrics as metrics_lib
from diff4rec_jax import models
from diff4rec_jax import rundir
from diff4rec_jax import serving_files
from diff4rec_jax import steps
from diff4rec_jax.datasets import prepare
from diff4rec_jax.serving_files import find_id_maps
from diff4rec_jax.serving_files import IdSpace
from diff4rec_jax.serving_files import read_id_map
from diff4rec_jax.serving_files import RecommendError
from diff4rec_jax.serving_files import UNKNOWN_ITEMS


@dataclasses.dataclass
class Histories:
  """Users' whole item sequences, CSR.

  user_ids [U] (ids as shown: raw or the data file's), indptr [U + 1]
  int64, items [nnz] int32 internal ids, time order within a user.
  """
  user_ids: np.ndarray
  indptr: np.ndarray
  items: np.ndarray


def unique_rows(indptr: np.ndarray, items: np.ndarray):
  """(row_of [h], items [h]) of a CSR with repeats within a row dropped."""
  row_of, pos = data_lib.row_ranges(indptr[:-1], indptr[1:])
  it = items[pos].astype(np.int64)
  order = np.lexsort((it, row_of))
  row_of, it = row_of[order], it[order]
  keep = np.ones(it.size, bool)
  keep[1:] = (row_of[1:] != row_of[:-1]) | (it[1:] != it[:-1])
  return row_of[keep], it[keep]


class Recommender:
  """A trained recommender with its ids, ready to rank items.

  Attributes:
    config: the run's resolved config (ml_collections.ConfigDict).
    params: the best-validation parameters.
    num_items: N; internal item ids are 1..N.
    items: IdSpace of items (raw ids when the dataset has an item map).
    users: the data's users and their whole histories (Histories), or None
      (an export made without them).
    meta: where it came from (run, best epoch, validation metrics).
    widths: [W] batch widths (ascending, last = max_len): each batch of
      users (sorted by length) is cut to the narrowest that holds it, one
      compile per width in use. Only the speed depends on them; the
      default is the run's `train.length_buckets` (few compiles: for one
      call, compilation outweighs narrower batches; see
      benchmarks/recommend_speed.py).
    batch_size: users per compiled call (the run's eval_batch_size).
  """

  def __init__(self, config, params, num_items: int,
               item_raw: Optional[np.ndarray] = None,
               users: Optional[Histories] = None,
               user_raw: Optional[np.ndarray] = None,
               meta: Optional[dict] = None):
    self.config = config
    self.params = jax.tree.map(jnp.asarray, params)
    self.num_items = num_items
    self.item_raw = item_raw
    self.user_raw = user_raw
    self.items = IdSpace(item_raw, num_items)
    self.users = users
    self.meta = meta or {}
    self.max_len = config.data.max_len
    self.model = models.get_model(config.model, num_items, self.max_len)
    self.set_widths(config.train.get("length_buckets") or ())
    self.chunk = int(config.train.get("eval_item_chunk", 4096))
    self.batch_size = int(config.train.get("eval_batch_size", 256))
    self._top_k_fns = {}
    self._score_fn = None

  def set_widths(self, widths) -> None:
    """Batch widths to cut users' rows to (max_len is always one)."""
    self.widths = np.array(sorted({int(w) for w in widths
                                   if 0 < int(w) < self.max_len}) +
                           [self.max_len], np.int64)

  # -- compiled pieces --------------------------------------------------------
  def _hidden(self, params, inputs):
    return self.model.apply({"params": params}, inputs, train=False,
                            last_only=True)[:, -1]                 # [B, D]

  def _hidden_chunked(self, params, inputs):
    """`_hidden` over row chunks as the run's evaluation does (on CPU the
    chunks stay in cache: `steps.resolve_micro_batch`); same result."""
    b, width = inputs.shape
    m = steps.resolve_micro_batch(self.config.train.get("micro_batch", -1)
                                  if b % 8 == 0 else 0, b, 1, width=width)
    if not m or b % m:
      return self._hidden(params, inputs)
    return steps.merge_rows(jax.lax.map(
        lambda x: self._hidden(params, x), steps.split_rows(inputs, b // m)))

  def _top_k_fn(self, k: int):
    if k not in self._top_k_fns:
      def fn(params, inputs, words):
        return metrics_lib.top_k_unseen(self._hidden_chunked(params, inputs),
                                    models.item_table(params), words,
                                    self.num_items, k, self.chunk)
      self._top_k_fns[k] = jax.jit(fn)
    return self._top_k_fns[k]

  # -- ids --------------------------------------------------------------------
  def histories_csr(self, histories, unknown_items: str, where=None):
    """Internal CSR (indptr, items) of histories given as users see ids.

    histories: a list of sequences, or a [U, L] array left- or right-padded
    with 0. where(j) names the source of flat entry j for error messages.
    """
    if unknown_items not in UNKNOWN_ITEMS:
      raise RecommendError(f"unknown_items: {unknown_items!r} is not one of "
                           f"{UNKNOWN_ITEMS}")
    if isinstance(histories, np.ndarray) and histories.ndim == 2:
      keep = histories != 0
      lens, flat = keep.sum(1), histories[keep]
    else:
      if len(histories) and np.ndim(histories[0]) == 0:
        raise RecommendError(
            "histories: expected a list of item sequences (one per user), "
            f"got a list of ids starting {histories[0]!r}; for one history "
            "pass [history].")
      seqs = [np.asarray(h).ravel() for h in histories]
      lens = np.array([s.size for s in seqs], np.int64)
      flat = (np.concatenate(seqs) if seqs and lens.sum()
              else np.zeros(0, np.int64))
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    ids, known = self.items.to_internal(flat)
    if not known.all():
      bad = np.flatnonzero(~known)
      row = int(np.searchsorted(indptr, bad[0], side="right") - 1)
      loc = where(int(bad[0])) if where else f"history {row}"
      if unknown_items == "error":
        raise RecommendError(
            f"{loc}: item {flat[bad[0]]} is not an item of this model "
            f"({bad.size} unknown item(s) in all; the model knows "
            f"{self.num_items} items, as "
            f"{'raw ids of its item map' if self.items.raw is not None else 'ids 1..N'}"
            "). Pass unknown_items='skip' (--unknown_items=skip) to drop "
            "them.")
      logging.warning("%s: dropped %d unknown item(s) (first: %s; "
                      "unknown_items=skip)", loc.split(":")[0], bad.size,
                      flat[bad[0]])
      rows = np.repeat(np.arange(len(lens)), lens)[known]
      indptr = np.concatenate(
          [[0], np.cumsum(np.bincount(rows, minlength=len(lens)))])
      ids = ids[known]
    return indptr.astype(np.int64), ids.astype(np.int32)

  # -- ranking ----------------------------------------------------------------
  def top_k_internal(self, indptr: np.ndarray, items: np.ndarray, k: int,
                     exclude_seen: bool = True,
                     batch_size: Optional[int] = None):
    """Top-k after each CSR history (internal ids).

    Args:
      indptr: [U + 1] int64; items: [nnz] internal ids, time order.
      k: items per user (1..N).
      exclude_seen: never return an item of the user's history.
    Returns:
      (items [U, k] int32 internal, 0 where fewer than k items remain;
       scores [U, k] float32, -inf there). An empty history gets none.
    """
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= self.num_items:
      raise RecommendError(f"k: must be an integer in [1, {self.num_items}] "
                           f"(the model's items), got {k!r}")
    k = int(k)
    b = int(batch_size or self.batch_size)
    u = len(indptr) - 1
    lengths = np.diff(indptr)
    inputs = data_lib.left_pad(items, indptr[:-1], indptr[1:], self.max_len)
    seen_indptr = np.zeros(u + 1, np.int64)
    if exclude_seen:
      row_of, seen = unique_rows(indptr, items)
      np.cumsum(np.bincount(row_of, minlength=u), out=seen_indptr[1:])
    else:
      seen = np.zeros(0, np.int64)
    fn = self._top_k_fn(k)
    order = np.argsort(lengths, kind="stable")
    capped = np.maximum(np.minimum(lengths, self.max_len), 1)
    out_items = np.zeros((u, k), np.int32)
    out_scores = np.full((u, k), -np.inf, np.float32)
    pending = []
    for start in range(0, u, b):
      pos = np.arange(start, start + b)
      rows = order[np.minimum(pos, u - 1)]
      width = int(self.widths[np.searchsorted(self.widths,
                                              capped[rows].max())])
      r_of, it = data_lib.csr_entries(seen_indptr, seen, rows)
      words = metrics_lib.history_words(r_of, it, b, self.num_items)
      # Dispatched without waiting; fetched once at the end.
      pending.append((rows[pos < u], fn(self.params, inputs[rows, -width:],
                                        words)))
    for rows, (s, i) in pending:
      s, i = jax.device_get((s, i))
      out_scores[rows], out_items[rows] = s[:len(rows)], i[:len(rows)]
    empty = lengths == 0
    out_scores[empty], out_items[empty] = -np.inf, 0
    return out_items, out_scores

  def recommend(self, histories, k: int = 10, unknown_items: str = "error",
                exclude_seen: bool = True):
    """Top-k items after each history.

    Args:
      histories: U item sequences (lists or arrays, oldest first), or a
        [U, L] array padded with 0; ids as the model shows them (raw ids
        when the dataset has an item map).
      k: items per history.
      unknown_items: 'error' (an item the model does not know raises,
        naming it) or 'skip' (dropped, counted in the log).
      exclude_seen: never recommend an item of the history.
    Returns:
      (items [U, k], scores [U, k] float32 descending); where fewer than k
      items remain: item 0 / '' and score -inf.
    """
    indptr, items = self.histories_csr(histories, unknown_items)
    ids, scores = self.top_k_internal(indptr, items, k, exclude_seen)
    return self.items.to_shown(ids), scores

  def user_rows(self, users=None) -> np.ndarray:
    """Rows of `self.users` for user ids as shown (None: every user)."""
    if self.users is None:
      raise RecommendError(
          "this model carries no user histories (an export made with "
          "--nohistories); pass histories instead.")
    if users is None:
      return np.arange(len(self.users.user_ids))
    want = np.asarray(users).astype(str).ravel()
    have = self.users.user_ids.astype(str)
    order = np.argsort(have, kind="stable")
    pos = np.minimum(np.searchsorted(have[order], want), len(have) - 1)
    found = have[order][pos] == want
    if not found.all():
      bad = want[~found]
      raise RecommendError(
          f"users: {bad.size} id(s) not in the data, e.g. "
          f"{', '.join(bad[:5])} (ids are "
          f"{'raw ids of the user map' if self.user_raw is not None else 'the data file ids'}"
          "; for a new user pass a history).")
    return order[pos]

  def recommend_users(self, users=None, k: int = 10,
                      exclude_seen: bool = True):
    """Top-k after the whole data sequence of each user (train, valid and
    test items all seen). users: ids as shown, None = all.
    Returns (user ids [U], items [U, k], scores [U, k])."""
    rows = self.user_rows(users)
    h = self.users
    start, end = h.indptr[rows], h.indptr[rows + 1]
    _, pos = data_lib.row_ranges(start, end)
    indptr = np.concatenate([[0], np.cumsum(end - start)]).astype(np.int64)
    ids, scores = self.top_k_internal(indptr, h.items[pos], k, exclude_seen)
    return h.user_ids[rows], self.items.to_shown(ids), scores

  def score(self, history, candidates, unknown_items: str = "error"):
    """Scores [C] float32 of `candidates` after one `history` (ids as
    shown). An unknown candidate raises, or with 'skip' scores NaN."""
    indptr, items = self.histories_csr([history], unknown_items)
    cand, known = self.items.to_internal(np.asarray(candidates).ravel())
    if not known.all() and unknown_items == "error":
      raise RecommendError(
          f"candidates: item {np.asarray(candidates).ravel()[~known][0]} is "
          "not an item of this model; pass unknown_items='skip' to score "
          "it NaN.")
    c = len(cand)
    c_pad = max(64, -(-c // 64) * 64)     # few shapes: few compiles
    cands = np.zeros((1, c_pad), np.int32)
    cands[0, :c] = cand
    inputs = data_lib.left_pad(items, indptr[:-1], indptr[1:], self.max_len)
    if self._score_fn is None:
      self._score_fn = jax.jit(lambda p, x, cd: metrics_lib.candidate_scores(
          self._hidden(p, x), models.item_table(p), cd))
    s = np.asarray(self._score_fn(self.params, inputs, cands))[0, :c]
    return np.where(known, s, np.nan).astype(np.float32)


# -- from a run's workdir ----------------------------------------------------
def _read_json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise RecommendError(f"{path}: unreadable ({e})") from e


def restore_best_params(config, ds, phase_dir: str):
  """(params, meta) of the best checkpoint of a recommender run in
  `phase_dir` (its parameter average when the run had `train.ema_decay` >
  0), read without writing there. Raises FileNotFoundError when the run
  has no best save yet, errors.UserError when it was put back from the
  archive without its checkpoints."""
  # Imported here: serving an export never loads Orbax. (A loader of a
  # run's saves, beside the drivers': `from_workdir` and the trainer's
  # 'teacher' candidates read a finished run through it.)
  from diff4rec_jax import checkpointing  # pylint: disable=g-import-not-at-top
  if os.path.exists(os.path.join(phase_dir, rundir.ARCHIVED_FILE)):
    raise errors.UserError(
        f"{phase_dir}: this run was put back from the repository's archive "
        "(benchmarks/archive.py) with its results but without its "
        "checkpoints, so it has no model to read. To get one, rerun it: "
        "remove the folder (and its copy under results/runs, which "
        "benchmarks/experiments.sh would put back) and run its command "
        "again.")
  model = models.get_model(config.model, ds.num_items, config.data.max_len)
  target = steps.init_state(model, steps.make_optimizer(config.train),
                            jax.random.key(0), config.data.max_len)
  ckpt = checkpointing.Checkpointer(
      os.path.join(phase_dir, "ckpt", "recommender"), read_only=True)
  try:
    state, meta = ckpt.restore_best(target)
  finally:
    ckpt.close()
  return steps.eval_params(state, config.train.get("ema_decay", 0.0)), meta


def from_workdir(path: str, data_dir: Optional[str] = None) -> Recommender:
  """A Recommender from a run's workdir: its config.json, its best
  checkpoint (`restore_best_params`) and its data file (found as
  training found it; `data_dir` replaces config.data.dir when the data has
  moved)."""
  cfg_path = os.path.join(path, "config.json")
  if not os.path.isfile(cfg_path):
    raise RecommendError(
        f"{path}: neither a run's workdir (no config.json) nor an export (no "
        "manifest.json).")
  config = ml_collections.ConfigDict(_read_json(cfg_path))
  if data_dir:
    config.data.dir = data_dir
  try:
    prepare.ensure_for_config(config.data)
    ds = data_lib.load(config.data)
  except data_lib.DataError as e:
    raise RecommendError(
        f"{path}: the run's data cannot be read ({e}). Pass the folder "
        "holding it (--data_dir), or use an export of the run "
        "(python -m diff4rec_jax.export).") from None
  try:   # the run's data fingerprint (item ids must mean the same items)
    rundir.check_run_data(
        path, ds, advice="Pass the folder holding the run's own data file "
        "(--data_dir).")
  except errors.UserError as e:   # DataMismatch, or an unreadable record
    raise RecommendError(str(e)) from None
  try:
    params, meta = restore_best_params(config, ds, path)
  except FileNotFoundError as e:
    raise RecommendError(
        f"{path}: no best checkpoint yet ({e}); the run has not finished a "
        "validation.") from None
  except errors.UserError as e:    # put back from the archive
    raise RecommendError(str(e)) from None
  maps = find_id_maps(ds.source, ds.name)
  item_raw = (read_id_map(maps["item"], ds.num_items) if maps["item"]
              else None)
  user_raw = (read_id_map(maps["user"], int(ds.user_ids.max()))
              if maps["user"] else None)
  shown = (serving_files.as_ids(user_raw)[ds.user_ids - 1] if user_raw is not None
           else ds.user_ids)
  users = Histories(shown, ds.indptr, ds.items)
  return Recommender(config, params, ds.num_items, item_raw=item_raw,
                     users=users, user_raw=user_raw,
                     meta={"workdir": os.path.abspath(path),
                           "data": ds.source, "dataset": ds.name,
                           "item_map": maps["item"], "user_map": maps["user"],
                           "best_epoch": meta.get("epoch"),
                           "valid": meta.get("valid")})


