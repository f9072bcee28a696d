"""Checkpoints: the only module that imports Orbax.

A `Checkpointer` owns one folder of a run (e.g. `workdir/ckpt/recommender`)
with two Orbax managers inside:

* `latest/`: the most recent save of the whole train state (params, optimizer
  state, step) plus a JSON `meta` dict (epoch, early-stopping state, RNG seed
  bookkeeping, anything the caller needs to resume exactly).
* `best/`: the best state by a caller-given score (kept for the final test
  evaluation). Besides the newest best save it keeps the two newest at or
  before the `latest` step, so a run killed between a best save and the next
  latest save resumes with the best state its `meta` describes (and has a
  fallback if that one is damaged).

Damage: each save gets a manifest (`diff4rec_manifest.json` in its step
folder: size and sha256 of every file) written after Orbax has finished it.
Orbax alone refuses a truncated data file but loads a flipped byte silently
(measured with orbax-checkpoint 0.12.8), so every restore first checks the
manifest. `latest` keeps two saves and `best` the two newest at or before
`latest`: a damaged save (manifest mismatch, or a save without manifest that
Orbax cannot read while an older one restores) is deleted with a warning
naming the file, and the previous good one is used. A save that fails
(disk full) leaves Orbax's temporary folder, which the next run removes.

Every process of a multi-host run must call `save` (Orbax coordinates the
write); the state is any pytree of jax/numpy arrays.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging as std_logging
import os
from typing import Any, Optional

from absl import logging
import jax
import orbax.checkpoint as ocp

from diff4rec_jax import errors

MANIFEST = "diff4rec_manifest.json"
# Saves kept in `latest/` (the newest and a fallback if it is damaged).
KEEP_LATEST = 2
# Best saves kept at or before the `latest` step.
KEEP_BEST = 2


class CheckpointError(errors.UserError):
  """A checkpoint cannot be saved (disk full) or none left can be read."""


def file_sha256(path: str) -> str:
  """Hex sha256 of a file, read in 1 MiB blocks."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _files(folder: str) -> dict:
  """{relative path: [size, sha256]} of every file under `folder`, the
  manifest excluded."""
  out = {}
  for root, _, names in os.walk(folder):
    for n in names:
      p = os.path.join(root, n)
      rel = os.path.relpath(p, folder)
      if not rel.startswith(MANIFEST):
        out[rel] = [os.path.getsize(p), file_sha256(p)]
  return out


def write_manifest(folder: str) -> None:
  """Records size and sha256 of every file of a finished save (process 0)."""
  if jax.process_index() != 0:
    return
  tmp = os.path.join(folder, MANIFEST + ".tmp")
  with open(tmp, "w") as f:
    json.dump({"files": _files(folder)}, f, indent=1, sort_keys=True)
  os.replace(tmp, os.path.join(folder, MANIFEST))


def check_manifest(folder: str) -> Optional[str]:
  """None if the save in `folder` matches its manifest (or has none: saves
  of older code; a kill between Orbax's save and the manifest); else what
  differs, naming the first damaged file."""
  path = os.path.join(folder, MANIFEST)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      want = json.load(f)["files"]
  except (OSError, ValueError, KeyError) as e:
    return f"{path}: unreadable manifest ({e})"
  for rel, (size, digest) in sorted(want.items()):
    p = os.path.join(folder, rel)
    if not os.path.exists(p):
      return f"{p}: missing"
    got = os.path.getsize(p)
    if got != size:
      return f"{p}: {got} bytes, expected {size} (truncated or overwritten)"
    if file_sha256(p) != digest:
      return f"{p}: content differs from its sha256 in {MANIFEST}"
  return None


def _is_disk_error(e: BaseException) -> bool:
  if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG,
                                            errno.EDQUOT):
    return True
  text = str(e).lower()
  return any(k in text for k in ("no space left", "file too large",
                                 "quota exceeded", "resource_exhausted"))


@contextlib.contextmanager
def _no_read_only_notice():
  """Drops Orbax's 'Given directory is read only=...' warning, which a
  read-only Checkpointer would print for each of its two folders."""
  drop = lambda r: "directory is read only" not in r.getMessage()
  logger = std_logging.getLogger("absl")
  logger.addFilter(drop)
  try:
    yield
  finally:
    logger.removeFilter(drop)


class Checkpointer:
  """Latest + best checkpoints of one training phase.

  `read_only=True` is for reading another run's saves (serving, a teacher's
  candidates): nothing is created, cleaned up or deleted there; a damaged
  save is skipped with a warning instead of deleted.
  """

  def __init__(self, directory: str, keep: int = KEEP_LATEST,
               read_only: bool = False):
    directory = os.path.abspath(directory)
    self.directory = directory
    self.read_only = read_only

    def options(max_to_keep):
      if read_only:   # what Orbax would set itself, with a warning each
        return ocp.CheckpointManagerOptions(
            max_to_keep=None, save_interval_steps=0, create=False,
            read_only=True, enable_async_checkpointing=False,
            cleanup_tmp_directories=False)
      return ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep, create=True,
          enable_async_checkpointing=False, cleanup_tmp_directories=True)

    with _no_read_only_notice():
      self._latest = ocp.CheckpointManager(
          os.path.join(directory, "latest"), options=options(keep))
      # Best saves are pruned by hand (`_prune_best`), not by max_to_keep:
      # the one a resumed run needs is the newest at or before its `latest`
      # step.
      self._best = ocp.CheckpointManager(
          os.path.join(directory, "best"), options=options(None))
    self._checked = set()      # (kind, step) whose manifest matched

  def _folder(self, kind: str, step: int) -> str:
    return os.path.join(self.directory, kind, str(step))

  def _good_steps(self, kind: str) -> list:
    """Steps of `kind` ('latest'/'best'), newest first, without the saves
    whose manifest does not match (deleted, or skipped when read-only, with
    a warning naming the file)."""
    mgr = self._latest if kind == "latest" else self._best
    good = []
    for s in sorted(mgr.all_steps(), reverse=True):
      if (kind, s) not in self._checked:
        problem = check_manifest(self._folder(kind, s))
        if problem:
          logging.warning("checkpoint %s is damaged: %s; %s (the previous "
                          "save, if any, is used instead)",
                          self._folder(kind, s), problem,
                          "skipping it" if self.read_only else "deleting it")
          if not self.read_only:
            mgr.delete(s)
          continue
        self._checked.add((kind, s))
      good.append(s)
    return good

  def _save(self, kind: str, step: int, state: Any, meta: dict) -> None:
    mgr = self._latest if kind == "latest" else self._best
    try:
      mgr.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
               force=True)
      mgr.wait_until_finished()
      write_manifest(self._folder(kind, step))
    except Exception as e:  # pylint: disable=broad-except
      if not _is_disk_error(e):
        raise
      kept = [s for s in mgr.all_steps() if s != step]
      raise CheckpointError(
          f"{self._folder(kind, step)}: saving the checkpoint failed "
          f"({type(e).__name__}: {e}). The previous save "
          f"({'step ' + str(max(kept)) if kept else 'none'}) is kept; free "
          "disk space and rerun the same command to resume from it.") from e
    self._checked.add((kind, step))

  # -- latest ---------------------------------------------------------------
  def latest_step(self) -> Optional[int]:
    """The newest `latest` save that matches its manifest (damaged newer
    ones are deleted, with a warning), or None."""
    good = self._good_steps("latest")
    return good[0] if good else None

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Saves `state` (pytree) and `meta` (JSON-able dict) as step `step`."""
    self._save("latest", step, state, meta)
    self._prune_best(step)

  def _prune_best(self, step: int) -> None:
    """Keeps the KEEP_BEST newest best saves at or before `step` (the
    second is the fallback if the first is damaged) and all newer ones."""
    older = [s for s in self._best.all_steps() if s <= step]
    for old in sorted(older)[:-KEEP_BEST]:
      self._best.delete(old)

  def _restore_first(self, kind: str, steps: list, target: Any):
    """(step, state, meta) of the first of `steps` that Orbax can read.

    A save that fails to load while an older one loads was damaged in a way
    its (missing) manifest could not show: it is deleted (unless read-only),
    so that its step can be saved again. If none loads, the newest one's
    error is raised.
    """
    mgr = self._latest if kind == "latest" else self._best
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    failed = []
    for s in steps:
      try:
        out = mgr.restore(s, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            meta=ocp.args.JsonRestore()))
      except Exception as e:  # pylint: disable=broad-except
        failed.append(e)
        if s != steps[-1]:
          logging.warning("checkpoint %s cannot be read (%s: %s); trying the "
                          "previous save", self._folder(kind, s),
                          type(e).__name__, str(e)[:300])
        continue
      for bad in steps[:len(failed)] if not self.read_only else ():
        mgr.delete(bad)
      return s, out["state"], out["meta"]
    if failed:
      raise failed[0]
    raise FileNotFoundError(f"no checkpoint in {self.directory}/{kind}")

  def restore(self, target: Any, step: Optional[int] = None):
    """Restores (state, meta) of `step` (default latest) shaped like `target`.

    `target` is a pytree of arrays (or `jax.ShapeDtypeStruct`s with
    shardings) giving the structure, dtypes and placement of the result.
    Best saves newer than `step` are deleted: a run resuming here replays
    those steps (they are what a kill between a best save and the next
    latest save leaves), and the newest remaining best save is the one the
    restored `meta` describes.
    """
    steps = self._good_steps("latest") if step is None else [step]
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {self.directory}/latest")
    step, state, meta = self._restore_first("latest", steps, target)
    self._discard_best_after(step)
    return state, meta

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
    self._save("best", step, state, meta)

  def _discard_best_after(self, step: int) -> None:
    for old in self._best.all_steps():
      if old > step:
        self._best.delete(old)

  def best_step(self) -> Optional[int]:
    good = self._good_steps("best")
    return good[0] if good else None

  def restore_best(self, target: Any):
    """(state, meta) of the newest good best save; a damaged newer one is
    deleted (skipped when read-only) with a warning (its `meta['epoch']`
    tells which one is used)."""
    newest = max(self._best.all_steps(), default=None)
    steps = self._good_steps("best")
    if not steps:
      raise FileNotFoundError(f"no best checkpoint in {self.directory}/best")
    step, state, meta = self._restore_first("best", steps, target)
    if step != newest:
      logging.warning(
          "%s: the newest best save (step %s) was damaged; %s the previous "
          "best save (step %d, epoch %s)", self.directory, newest,
          "this read uses" if self.read_only else "the final evaluation uses",
          step, meta.get("epoch"))
    return state, meta

  def close(self) -> None:
    self._latest.close()
    self._best.close()


def quiet_orbax() -> None:
  """Orbax logs every restore at INFO; keep the command's own lines."""
  for handler in std_logging.getLogger().handlers:
    handler.addFilter(lambda r: "orbax" not in r.pathname or
                      r.levelno >= std_logging.WARNING)
