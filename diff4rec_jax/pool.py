"""Phase 2 of Diff4Rec: K copies per user, their similarities, the order.

`build_pool` takes the top-M candidates (generator phase or a control) and
the item embeddings that score the copies (warm-up phase) as arrays; it does
not call back into any trainer. It drives the compiled kernels over all
users: `augment_all` (the K-copy kernel `augment.augment_batch`),
`similarity_all` (Eq. 11, `curriculum.similarity`) and `score_all` (both
fused, copies not kept), each in fixed-size batches grouped by length
(`run_bucketed`) and sharded over the devices. `AugmentPool.draw` hands each step its
copies. `workdir/augmented.npz` caches the pool (reused when its hash
matches the config: `load_cached`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time

from typing import Any, Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from diff4rec_jax import augment
from diff4rec_jax import candidates
from diff4rec_jax import curriculum
from diff4rec_jax import data as data_lib
from diff4rec_jax import errors
from diff4rec_jax import input_pipeline
from diff4rec_jax import sharding


AUGMENTED_FILE = "augmented.npz"


def pacing_steps(config, steps_per_epoch: int) -> int:
  """Steps the curriculum's pacing function is laid over (its clock).

  `augment.pacing_epochs` epochs, or all `train.num_epochs` when it is 0.
  With early stopping a run often ends long before num_epochs, so a
  pacing laid over num_epochs may never admit the hard end of the pool.
  """
  return steps_per_epoch * (config.augment.pacing_epochs
                            or config.train.num_epochs)


def aug_batch_size(config, mesh) -> int:
  """Copies per step: copies_per_batch x batch, a multiple of the devices."""
  a = int(round(config.augment.copies_per_batch * config.train.batch_size))
  return sharding.round_up(max(1, a), mesh)


def admitted_count_from_config(p, pool_size: int, augment_config,
                               mode: str = "diff4rec"):
  """`curriculum.admitted_count` with config.augment's pacing; mode 'aug'
  admits all."""
  a = augment_config
  kind = "none" if mode == "aug" else a.pacing
  return curriculum.admitted_count(p, pool_size, kind, a.pacing_start,
                                   a.pacing_end, a.pacing_stages)


@dataclasses.dataclass
class AugmentPool:
  """All U x K augmented copies and their curriculum order.

  copies: [P, L] int32 flat pool (row u * K + r is copy r of user u).
  order: [P] int32 pool indices, easy to hard (similarity descending); the
    'aug' mode ("w/o cur") admits the whole pool from the first step.
  widths: sorted batch widths (the last = L) to cut copies to, like the
    originals' length buckets: each step's copies come from one width
    bucket (`draw`). None: every copy at width L.
  """
  copies: np.ndarray
  order: np.ndarray
  augment_config: ml_collections.ConfigDict
  mode: str
  seed: int
  orig: Optional[np.ndarray] = None    # [U, L] originals (for re-scoring)
  widths: Optional[np.ndarray] = None
  _strata_of: Any = dataclasses.field(default=None, repr=False)

  def rescore(self, item_emb, mesh) -> None:
    """Re-sorts the pool by Eq. 11 with new item embeddings [N + 1, D]."""
    u, l = self.orig.shape
    copies = self.copies.reshape(u, -1, l)
    sim = similarity_all(item_emb, self.orig, copies,
                         batch_size=self.augment_config.batch_size,
                         mesh=mesh)
    self.order = curriculum.pool_order(
        sim, self.augment_config.curriculum_scope,
        self.augment_config.curriculum_direction)

  def admitted(self, step: int, pace_steps: int) -> int:
    """Copies admitted at `step` of a curriculum laid over `pace_steps`."""
    p = step / max(1, pace_steps)
    return int(admitted_count_from_config(
        p, len(self.order), self.augment_config, self.mode))

  def _strata(self):
    """(widths [S], positions: per width, the ascending positions in `order`
    of the copies it is the narrowest width for, pass: the 'pop' schedule's
    steps as (stratum, first position index) in curriculum order)."""
    if self._strata_of is None or self._strata_of[0] is not self.order:
      width = self.copies.shape[1]
      widths = (np.asarray(self.widths) if self.widths is not None
                else np.array([width]))
      pairs = np.maximum((self.copies > 0).sum(axis=1) - 1, 1)
      stratum = np.searchsorted(widths, pairs)[self.order]
      positions = [np.flatnonzero(stratum == s) for s in range(len(widths))]
      self._strata_of = (self.order, widths, positions)
    return self._strata_of[1:3]

  def pass_steps(self, num: int) -> list:
    """Schedule 'pop' (Algorithm 1, line 18: each copy is taken once, easiest
    first): the first pass as a list of (stratum, start); step s < its
    length takes the `num` copies of its stratum from `start` on, in
    curriculum order. Chunks of all strata are merged by the curriculum
    position of their first copy."""
    _, positions = self._strata()
    cached = self._strata_of[3:] if len(self._strata_of) > 3 else None
    if cached and cached[0] == num:
      return cached[1]
    chunks = [(int(p[j]), s, j) for s, p in enumerate(positions)
              for j in range(0, len(p), num)]
    steps = [(s, j) for _, s, j in sorted(chunks)]
    self._strata_of = self._strata_of[:3] + (num, steps)
    return steps

  def draw(self, step: int, pace_steps: int, num: int,
           local: slice = slice(None)) -> dict:
    """A fixed-size batch of copies from the admitted part of the pool.

    Schedule 'paced' (default): `num` copies drawn uniformly with
    replacement from the admitted part; with `widths`, first a width
    stratum with probability proportional to its admitted copies, then the
    copies within it (so each admitted copy is equally likely, as before)
    and the batch is cut to that width. Schedule 'pop': one pass through
    the whole pool in curriculum order (`pass_steps`), then as 'paced'
    with everything admitted.

    Host-side, a function of (seed, step) only, so a resumed run (and every
    process) draws the same copies. Returns next-item pairs
    {'aug_inputs', 'aug_targets'} [num, W] int32, or only their `local`
    rows.
    """
    widths, positions = self._strata()
    rng = np.random.default_rng([self.seed, 7, step])
    pop = self.augment_config.get("schedule", "paced") == "pop"
    first_pass = self.pass_steps(num) if pop else []
    if step < len(first_pass):
      s, j = first_pass[step]
      p = positions[s]
      sel = p[(j + np.arange(num)) % len(p)]
    else:
      n = (len(self.order) if pop else self.admitted(step, pace_steps))
      counts = np.array([np.searchsorted(p, n) for p in positions])
      s = 0 if len(positions) == 1 else int(
          rng.choice(len(positions), p=counts / counts.sum()))
      sel = positions[s][rng.integers(0, counts[s], num)]
    idx = self.order[sel][local]
    inputs, targets = augment.shift_pairs(self.copies[idx])
    w = int(widths[s])
    return {"aug_inputs": inputs[:, -w:], "aug_targets": targets[:, -w:]}


def config_hash(config, ds) -> str:
  # Only the settings that change the copies or their similarities: the
  # pacing, loss weight, re-scoring etc. may differ between runs sharing it.
  a = config.augment
  pool_fields = ("num_copies", "candidates", "exclude_history",
                 "copy_source", "ratio", "top_m", "temperature", "reorder",
                 "similarity_source", "similarity_checkpoint", "warmup_epochs")
  keys = {"seed": config.seed, "data": ds.name, "max_len": config.data.max_len,
          "augment": {f: a[f] for f in pool_fields},
          "generator": (config.generator.to_dict()
                        if a.candidates == "generator" else None),
          "model": (
              config.model.to_dict() if config.augment.similarity_source ==
              "warmup" else None)}
  if a.candidates == "teacher":   # the teacher run's outcome, not its path
    with open(os.path.join(a.teacher_workdir, "results.json"), "rb") as f:
      keys["teacher"] = hashlib.sha256(f.read()).hexdigest()
  if a.min_replaced:   # added in session 20: older pools keep their hash
    keys["min_replaced"] = a.min_replaced
  if a.curriculum_scope != "global":   # the export's `rank` follows it
    keys["curriculum_scope"] = a.curriculum_scope
  if a.curriculum_direction != "easy_first":
    keys["curriculum_direction"] = a.curriculum_direction
  return hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()


def load_cached(config, ds, workdir: str) -> Optional[AugmentPool]:
  """The pool saved in `workdir/augmented.npz` if its hash matches."""
  path = os.path.join(workdir, AUGMENTED_FILE)
  if os.path.exists(path):
    with np.load(path) as z:
      if str(z["config_hash"]) == config_hash(config, ds):
        logging.info("augmentation: reusing %s", path)
        return make_pool(config, z["copies"], z["sim"], z["orig"])
  return None


def control_candidates(config, ds):
  """(items [U, M], probs [U, M]) of a control source
  (`augment.candidates` 'popular' or 'uniform'; candidates.py)."""
  a = config.augment
  indptr, hist = input_pipeline.train_rows(ds)
  _, train_pos = data_lib.row_ranges(ds.indptr[:-1], ds.split_end("train"))
  counts = candidates.item_counts(ds.items[train_pos], ds.num_items)
  return candidates.control_topm(a.candidates, indptr, hist, counts,
                                 a.top_m, config.seed, a.exclude_history)


def build_pool(config, ds, workdir: str, cand: np.ndarray, prob: np.ndarray,
               item_emb: np.ndarray) -> AugmentPool:
  """Top-M candidates -> K copies per user -> similarities -> order.

  Args:
    config: the run config (`augment`, `data.max_len`, `seed`, `mode`).
    ds: the dataset.
    workdir: where `augmented.npz` is written (process 0).
    cand, prob: [U, M] candidate items and probabilities (the generator's
      top-M or a control's).
    item_emb: [N + 1, D] item embeddings that score the copies (Eq. 11).

  `augmented.npz` (an export other tools can read with numpy.load):
    copies [U, K, L] int32  augmented training sequences, left-padded
    orig   [U, L] int32     the original training sequence S_u
    sim    [U, K] float32   Sim_{u,r} of Eq. 11 (cosine of mean embeddings)
    rank   [U, K] int32     curriculum position (0 = first admitted: the
                            most similar, or the least with 'hard_first')
    user_ids [U] int64      dataset user ids of the rows
    config_hash             hash of the settings that made the file
  """
  a = config.augment
  path = os.path.join(workdir, AUGMENTED_FILE)
  chash = config_hash(config, ds)
  if len(cand) != ds.num_users:
    raise errors.UserError(f"top-M candidates: {len(cand)} rows for "
                           f"{ds.num_users} users")
  t = time.time()
  logging.info("phase: augmentation (%d users x %d copies)", ds.num_users,
               a.num_copies)
  max_len = config.data.max_len
  end = ds.split_end("train")
  seqs = data_lib.left_pad(ds.items, ds.indptr[:-1], end, max_len)
  lengths = np.minimum(end - ds.indptr[:-1], max_len)
  key = jax.random.fold_in(jax.random.key(config.seed), 11)
  mesh = sharding.make_mesh()
  # copy_source 'prefix': each copy is made from the whole training prefix
  # (n = ratio x its length), then cut to its newest max_len items.
  src, src_len = seqs, lengths
  prefix_len = end - ds.indptr[:-1]
  if a.copy_source == "prefix" and prefix_len.max() > max_len:
    width = int(prefix_len.max())
    src = data_lib.left_pad(ds.items, ds.indptr[:-1], end, width)
    src_len = np.minimum(prefix_len, width)
  copies = augment_all(
      key, src, src_len, cand, prob, num_copies=a.num_copies,
      ratio=a.ratio, temperature=a.temperature, reorder=a.reorder,
      batch_size=a.batch_size, mesh=mesh,
      exclude_history=a.exclude_history, min_replaced=a.min_replaced)
  if copies.shape[2] > max_len:
    copies = np.ascontiguousarray(copies[:, :, -max_len:])
  sim = similarity_all(item_emb, seqs, copies, lengths,
                       batch_size=a.batch_size, mesh=mesh)
  order = curriculum.pool_order(sim, a.curriculum_scope,
                                a.curriculum_direction)
  rank = np.empty(order.size, np.int32)
  rank[order] = np.arange(order.size, dtype=np.int32)
  logging.info("augmentation: %d users x %d copies in %.1fs; similarity "
               "mean %.3f (min %.3f, max %.3f)", ds.num_users, a.num_copies,
               time.time() - t, float(sim.mean()), float(sim.min()),
               float(sim.max()))
  if sharding.is_chief():
    os.makedirs(workdir, exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, copies=copies, orig=seqs, sim=sim,
             rank=rank.reshape(sim.shape), user_ids=ds.user_ids,
             config_hash=np.array(chash))
    os.replace(tmp, path)
  return make_pool(config, copies, sim, seqs, order)


def make_pool(config, copies, sim, orig=None, order=None) -> AugmentPool:
  """The training pool; `order`: `curriculum.pool_order(sim, scope,
  direction)` if already computed (diff4rec mode only)."""
  u, k, l = copies.shape
  if config.mode == "diff4rec":
    if order is None:
      order = curriculum.pool_order(sim, config.augment.curriculum_scope,
                                    config.augment.curriculum_direction)
  elif config.augment.get("schedule", "paced") == "pop":
    # 'aug' with one pass: the pass goes through the pool in random order.
    order = np.random.default_rng([config.seed, 17]).permutation(
        u * k).astype(np.int32)
  else:  # 'aug': every copy admitted from the start, order irrelevant
    order = np.arange(u * k, dtype=np.int32)
  widths = (input_pipeline.bucket_widths(config)
             if config.augment.get("bucket_copies", True) else None)
  return AugmentPool(copies=copies.reshape(u * k, l), order=order,
                     augment_config=config.augment, mode=config.mode,
                     seed=config.seed, orig=orig, widths=widths)


def restore_order(pool, workdir: str, epoch: int) -> None:
  """Loads the newest re-scored curriculum order saved at or before `epoch`."""
  saved = []
  for f in os.listdir(workdir):
    if f.startswith("pool_order_e") and f.endswith(".npy"):
      e = int(f[len("pool_order_e"):-len(".npy")])
      if e <= epoch:
        saved.append(e)
  if saved:
    pool.order = np.load(os.path.join(workdir, f"pool_order_e{max(saved)}.npy"))
    logging.info("curriculum order re-scored at epoch %d restored",
                 max(saved))


# -- the kernels over all users --------------------------------------------
def run_bucketed(lengths, max_len: int, batch_size: int, compute, store,
                 min_width: int = 8, widths: Optional[Sequence[int]] = None):
  """Drives a compiled per-batch function over all users, grouped by length.

  For each width class w and fixed-size batch `idx` of its users,
  `compute(idx, w)` dispatches the device work and returns a (possibly
  sharded) array whose first axis is the batch; `store(users, host_array)`
  receives the real rows. One batch is computed while the previous one is
  copied to the host.
  """
  pending = []
  for w, users in input_pipeline.length_buckets(lengths, max_len, min_width,
                                                widths):
    for idx, n in input_pipeline.iter_batches(users, batch_size):
      pending.append((idx[:n], compute(idx, w)))
      if len(pending) > 1:
        done, res = pending.pop(0)
        store(done, sharding.to_host(res)[:len(done)])
  for done, res in pending:
    store(done, sharding.to_host(res)[:len(done)])


def augment_all(key, seqs: np.ndarray, lengths: np.ndarray, cand: np.ndarray,
                prob: np.ndarray, *, num_copies: int, ratio: float,
                temperature: float = 1.0, reorder: bool = True,
                batch_size: int = 4096, min_width: int = 8,
                widths: Optional[Sequence[int]] = None,
                out: Optional[np.ndarray] = None,
                dedupe: Optional[bool] = None, mesh=None,
                exclude_history: bool = True,
                min_replaced: int = 0) -> np.ndarray:
  """K copies of every user, in fixed-size batches bucketed by length.

  Equal, row for row, to `augment.augment_batch(key, seqs, ..., user_ids=arange(U))`
  at full width (see the module docstring), whatever `batch_size` and
  however many devices: each batch is sharded over `mesh` on its user axis.

  Args:
    key: jax.random key; seqs: [U, L] int32 left-padded; lengths: [U];
    cand: [U, M] int32; prob: [U, M] float32; the rest as `augment_batch`.
    batch_size: users per compiled call (the last batch of a width is
      padded), so one compilation per width class; rounded up to a multiple
      of the device count (`sharding.round_up`).
    widths: override the width classes (default 8, 16, 32, ..., L).
    out: optional [U, K, L] int32 buffer to fill (reused across calls, it
      saves the first-touch cost of a fresh U*K*L array).
    dedupe: None = `augment.has_repeats(cand)` (one numpy sort); the copies are the
      same whichever value a repeat-free `cand` gets.
    mesh: the device mesh (`sharding.make_mesh()` if None).
  Returns:
    [U, K, L] int32 numpy (`out` if given).
  """
  seqs = np.asarray(seqs, np.int32)
  u, l = seqs.shape
  lengths = np.minimum(np.asarray(lengths), l)
  if out is None:
    out = np.zeros((u, num_copies, l), np.int32)
  if dedupe is None:
    dedupe = augment.has_repeats(cand)
  if mesh is None:
    mesh = sharding.make_mesh()
  batch_size = sharding.round_up(batch_size, mesh)
  key = sharding.replicate(key, mesh)

  def compute(idx, w):
    loc = sharding.local_part(idx, mesh)   # this process's rows only
    b = sharding.shard_local_batch(
        (seqs[loc, l - w:], lengths[loc], cand[loc], prob[loc],
         loc.astype(np.uint32)), mesh)
    return augment.augment_batch(
        key, b[0], b[1], b[2], b[3], num_copies=num_copies, ratio=ratio,
        temperature=temperature, reorder=reorder, user_ids=b[4],
        dedupe=dedupe, exclude_history=exclude_history,
        min_replaced=min_replaced)

  def store(users, res):
    w = res.shape[2]
    out[users, :, :l - w] = 0
    out[users, :, l - w:] = res

  run_bucketed(lengths, l, batch_size, compute, store, min_width, widths)
  return out


def similarity_all(item_emb, seqs: np.ndarray, copies: np.ndarray,
                   lengths: Optional[np.ndarray] = None, *,
                   batch_size: int = 4096, min_width: int = 8,
                   widths: Optional[Sequence[int]] = None,
                   mesh=None) -> np.ndarray:
  """Sim for all users x K copies, in fixed-size batches grouped by length.

  Data-parallel: each batch's users are sharded over `mesh` (default all
  devices), the embeddings replicated; a user's Sim does not depend on the
  device count.

  Args:
    item_emb: [N+1, D]; seqs: [U, L] int32; copies: [U, K, L] int32.
    lengths: [U] item counts; default counted from `seqs`.
    batch_size: users per compiled call (last batch of a width padded),
      rounded up to a multiple of the device count
      (`sharding.round_up`).
    mesh: the device mesh (`sharding.make_mesh()` if None).
  Returns:
    [U, K] float32 numpy.
  """
  seqs = np.asarray(seqs)
  u, l = seqs.shape
  if lengths is None:
    lengths = np.count_nonzero(seqs, axis=1)
  if mesh is None:
    mesh = sharding.make_mesh()
  batch_size = sharding.round_up(batch_size, mesh)
  item_emb = sharding.replicate(jnp.asarray(item_emb, jnp.float32), mesh)
  out = np.zeros((u, copies.shape[1]), np.float32)

  def compute(idx, w):
    loc = sharding.local_part(idx, mesh)   # this process's rows only
    b = sharding.shard_local_batch((seqs[loc, l - w:], copies[loc, :, l - w:]),
                                   mesh)
    return curriculum.similarity(item_emb, b[0], b[1])

  run_bucketed(lengths, l, batch_size, compute,
                       lambda users, r: out.__setitem__(users, r),
                       min_width, widths)
  return out


@functools.partial(jax.jit, static_argnames=("num_copies", "ratio", "reorder",
                                             "dedupe", "exclude_history",
                                             "min_replaced"))
def _augment_and_score(key, item_emb, seqs, lengths, cand, prob, user_ids, *,
                       num_copies, ratio, temperature, reorder, dedupe,
                       exclude_history, min_replaced):
  copies = augment.augment_batch(
      key, seqs, lengths, cand, prob, num_copies=num_copies, ratio=ratio,
      temperature=temperature, reorder=reorder, user_ids=user_ids,
      dedupe=dedupe, exclude_history=exclude_history,
      min_replaced=min_replaced)
  return curriculum.similarity(item_emb, seqs, copies)


def score_all(key, item_emb, seqs: np.ndarray, lengths: np.ndarray,
              cand: np.ndarray, prob: np.ndarray, *, num_copies: int,
              ratio: float, temperature: float = 1.0, reorder: bool = True,
              batch_size: int = 4096, min_width: int = 8,
              widths: Optional[Sequence[int]] = None,
              dedupe: Optional[bool] = None, mesh=None,
              exclude_history: bool = True,
              min_replaced: int = 0) -> np.ndarray:
  """Sim of every copy `augment_all` would make, without storing it.

  Data-parallel like `similarity_all` (users sharded over `mesh`, default
  all devices; `batch_size` rounded up to a multiple of the device count).

  Returns:
    [U, K] float32 numpy; copy (u, r) itself is `augment.augment_copies`
    with the same key and settings.
  """
  seqs = np.asarray(seqs, np.int32)
  u, l = seqs.shape
  lengths = np.minimum(np.asarray(lengths), l)
  if mesh is None:
    mesh = sharding.make_mesh()
  batch_size = sharding.round_up(batch_size, mesh)
  key, item_emb = sharding.replicate(
      (key, jnp.asarray(item_emb, jnp.float32)), mesh)
  out = np.zeros((u, num_copies), np.float32)
  if dedupe is None:
    dedupe = augment.has_repeats(cand)

  def compute(idx, w):
    loc = sharding.local_part(idx, mesh)   # this process's rows only
    b = sharding.shard_local_batch(
        (seqs[loc, l - w:], lengths[loc], cand[loc], prob[loc],
         loc.astype(np.uint32)), mesh)
    return _augment_and_score(
        key, item_emb, *b, num_copies=num_copies, ratio=ratio,
        temperature=temperature, reorder=reorder, dedupe=dedupe,
        exclude_history=exclude_history, min_replaced=min_replaced)

  run_bucketed(lengths, l, batch_size, compute,
                       lambda users, r: out.__setitem__(users, r),
                       min_width, widths)
  return out
