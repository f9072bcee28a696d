"""Checkpoints: the only module that imports Orbax.

A `Checkpointer` owns one folder of a run (e.g. `workdir/ckpt/recommender`)
with two Orbax managers inside:

* `latest/`: the most recent save of the whole train state (params, optimizer
  state, step) plus a JSON `meta` dict (epoch, early-stopping state, RNG seed
  bookkeeping, anything the caller needs to resume exactly).
* `best/`: the best state by a caller-given score (kept for the final test
  evaluation). Besides the newest best save it keeps the newest one at or
  before the `latest` step, so a run killed between a best save and the next
  latest save resumes with the best state its `meta` describes.

Every process of a multi-host run must call `save` (Orbax coordinates the
write); the state is any pytree of jax/numpy arrays.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Latest + best checkpoints of one training phase."""

  def __init__(self, directory: str, keep: int = 1):
    directory = os.path.abspath(directory)
    self.directory = directory
    opts = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                        enable_async_checkpointing=False)
    self._latest = ocp.CheckpointManager(os.path.join(directory, "latest"),
                                         options=opts)
    # Best saves are pruned by hand (`_prune_best`), not by max_to_keep: the
    # one a resumed run needs is the newest at or before its `latest` step.
    self._best = ocp.CheckpointManager(
        os.path.join(directory, "best"),
        options=ocp.CheckpointManagerOptions(max_to_keep=None, create=True,
                                             enable_async_checkpointing=False))

  # -- latest ---------------------------------------------------------------
  def latest_step(self) -> Optional[int]:
    return self._latest.latest_step()

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Saves `state` (pytree) and `meta` (JSON-able dict) as step `step`."""
    self._latest.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                      force=True)
    self._latest.wait_until_finished()
    self._prune_best(step)

  def _prune_best(self, step: int) -> None:
    """Keeps the newest best save at or before `step` and all newer ones."""
    older = [s for s in self._best.all_steps() if s <= step]
    for old in sorted(older)[:-1]:
      self._best.delete(old)

  def restore(self, target: Any, step: Optional[int] = None):
    """Restores (state, meta) of `step` (default latest) shaped like `target`.

    `target` is a pytree of arrays (or `jax.ShapeDtypeStruct`s with
    shardings) giving the structure, dtypes and placement of the result.
    Best saves newer than `step` are deleted: a run resuming here replays
    those steps (they are what a kill between a best save and the next
    latest save leaves), and the newest remaining best save is the one the
    restored `meta` describes.
    """
    step = self._latest.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}/latest")
    self._discard_best_after(step)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    out = self._latest.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]

  # -- best -----------------------------------------------------------------
  def save_best(self, step: int, state: Any, meta: dict) -> None:
    """Replaces the best checkpoint with `state` at `step`.

    A best save at `step` may already exist when a run resumed from an older
    `latest` replays the steps after it: that save belonged to the abandoned
    trajectory and is replaced.
    """
    for old in self._best.all_steps():
      if old >= step:
        self._best.delete(old)
    self._best.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                    force=True)
    self._best.wait_until_finished()

  def _discard_best_after(self, step: int) -> None:
    for old in self._best.all_steps():
      if old > step:
        self._best.delete(old)

  def best_step(self) -> Optional[int]:
    return self._best.latest_step()

  def restore_best(self, target: Any):
    step = self._best.latest_step()
    if step is None:
      raise FileNotFoundError(f"no best checkpoint in {self.directory}/best")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    out = self._best.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]

  def close(self) -> None:
    self._latest.close()
    self._best.close()
