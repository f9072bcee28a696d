"""The one training loop of every phase that trains a model.

The recommender (`train.train_recommender`, also the warm-up) and the
generator (`generator.run_generator_phase`) run the same skeleton; each
supplies a `Phase`: its batches, its step, how its step metrics read, its
evaluation and cadence.

  state, meta = restore(ckpt, state)       # the latest save, or a fresh meta
  result = train(phase, state, meta, ckpt, log)

`train` runs, until `num_epochs` or an early stop:

  for each epoch:
    the epoch's steps (from batch `batches_done` of a mid-epoch stop on),
      their metrics summed on device; a progress line with the epoch's ETA
      every `log_every_steps` steps, after the process's first step and
      every runlog.PROGRESS_SECONDS (the only syncs inside an epoch); a stop
      request (SIGTERM/SIGINT, agreed across processes) saves a checkpoint
      where it is and raises `runlog.Interrupted` (main.py exits 143);
      one in the last epoch too, after the epoch's save, so that nothing
      after the loop runs once a stop was asked for
    a non-finite loss stops the run, naming the step (nothing is saved)
    the epoch line (with the run's ETA) and its metrics.jsonl row
    every `eval_every` epochs and at the last: `evaluate`; a best save when
      `metric` improves; an early stop after `patience` evaluations without
      improvement
    `after_epoch` (the recommender's curriculum re-scoring)
    a checkpoint every `checkpoint_every` epochs, at the end and before a
      stop (`stop_after_epochs`, a stand-in for a kill in tests)

and returns the last state, its meta and (phases that evaluate) the best
state. A finished run's checkpoint runs no step: a rerun only restores.

The checkpoint meta (JSON, saved with the state) holds what resuming needs:
epoch (completed), batches_done and step_sums (a mid-epoch stop),
best_score, best_epoch, bad_evals, early_stopped, train_seconds, and the
phase's own fields (`Phase.meta`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterator, Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from diff4rec_jax import errors
from diff4rec_jax import runlog

DEFAULT_HINT = "lower train.lr or check the data."


@dataclasses.dataclass
class Phase:
  """What a training phase supplies to `train`.

  Attributes:
    name: prefix of its log lines ('' for the recommender, whose lines read
      'epoch 3/200 ...').
    num_epochs: epochs in all; a resumed run continues up to it.
    batches: (epoch, skip, step) -> (steps in the epoch, iterator of device
      batches from batch `skip` on); `step` is the global step of the first
      batch it yields. A function of (seed, epoch): a resumed run replays
      the same batches.
    train_step: (state, batch) -> (state, metrics): the jitted step, state
      donated; metrics a flat dict of scalar device arrays with a 'loss'.
    summarize: (means, rate, seconds) -> (text, fields): the epoch line's
      text after 'epoch e/E' and the epoch's metrics.jsonl fields. `means`
      are the step metrics averaged over the epoch's steps (or divided by
      the sum of `count_key`), `rate` examples per second.
    examples_per_epoch: what `rate` counts (sequences, users).
    count_key: step metric the sums are divided by (None: the step count).
    evaluate: state -> {metric: value} on the validation split; None: the
      phase does not evaluate while training (no best save, no early stop).
    metric: the selection metric of `evaluate` (higher is better).
    eval_every: epochs between evaluations (the last epoch always is one).
    patience: evaluations without improvement before stopping.
    checkpoint_every: epochs between checkpoints; 0: only at the end and
      before a stop.
    log_every_steps: a progress line every that many steps (0: by time).
    after_epoch: (state, epoch) -> None, after the evaluation.
    meta: fields saved in every checkpoint's meta (a phase's guard hashes).
    hint: what the non-finite-loss error suggests.
  """
  name: str
  num_epochs: int
  batches: Callable[[int, int, int], tuple[int, Iterator[Any]]]
  train_step: Callable[[Any, Any], tuple[Any, dict]]
  summarize: Callable[[dict, float, float], tuple[str, dict]]
  examples_per_epoch: int
  count_key: Optional[str] = None
  evaluate: Optional[Callable[[Any], dict]] = None
  metric: str = "NDCG@10"
  eval_every: int = 1
  patience: int = 1
  checkpoint_every: int = 0
  log_every_steps: int = 0
  after_epoch: Optional[Callable[[Any, int], None]] = None
  meta: dict = dataclasses.field(default_factory=dict)
  hint: str = DEFAULT_HINT

  @property
  def prefix(self) -> str:
    return f"{self.name} " if self.name else ""


@dataclasses.dataclass
class Result:
  """What `train` ends with.

  Attributes:
    state: the last state.
    meta: its meta: epoch (epochs run), best_epoch, train_seconds, ...
    best_state: the best-validation state (None if the phase does not
      evaluate).
  """
  state: Any
  meta: dict
  best_state: Any = None


def new_meta() -> dict:
  """The meta of a run that has done nothing yet."""
  return {"epoch": 0, "best_score": None, "best_epoch": 0, "bad_evals": 0,
          "early_stopped": False, "train_seconds": 0.0}


def _upgrade(saved: dict) -> dict:
  """A saved meta in this module's names, missing fields at their start.

  Recommender saves made before this module kept 'best_ndcg10', 'finished'
  and 'loss_partial'; generator saves only 'epoch' and their hashes.
  """
  meta = dict(saved)
  if "best_ndcg10" in meta:
    meta["best_score"] = meta.pop("best_ndcg10")
  if "finished" in meta:   # set at the last epoch too, which ends the loop
    meta["early_stopped"] = meta.pop("finished")
  if "loss_partial" in meta:
    meta["step_sums"] = {"loss": meta.pop("loss_partial")}
  return {**new_meta(), **meta}


def restore(ckpt, target, *, what: str = "recommender",
            check: Optional[Callable[[dict], None]] = None,
            place: Optional[Callable[[Any], Any]] = None):
  """(state, meta): the latest checkpoint of `ckpt`, else (target, new).

  Damaged saves fall back to the previous one (checkpointing.py); a save
  that no longer fits `target` raises a UserError naming the folder.

  Args:
    ckpt: the phase's `checkpointing.Checkpointer`.
    target: the fresh state, which gives the structure and placement.
    what: the phase, for messages.
    check: meta -> None, raises if the save may not be resumed (the
      generator's training-settings hash).
    place: applied to a restored state (the generator's uncommitted copy).
  """
  if ckpt.latest_step() is None:
    return target, new_meta()
  try:
    state, saved = ckpt.restore(target)
  except errors.UserError:
    raise
  except Exception as e:  # Orbax raises various types on a mismatch.
    raise errors.UserError(
        f"{ckpt.directory}: cannot restore the {what} checkpoint "
        f"({type(e).__name__}: {e}). None of its saves loads into this "
        f"{what}: made by other settings (model sizes, dataset) or damaged. "
        "Use another workdir or delete that folder.") from e
  if check is not None:
    check(saved)
  meta = _upgrade(saved)
  logging.info("%s: resumed from %s at epoch %d (step %d)", what,
               ckpt.directory, meta["epoch"], int(state["step"]))
  return (place(state) if place else state), meta


def train(phase: Phase, state, meta: dict, ckpt, log: runlog.RunLog, *,
          stop_after_epochs: Optional[int] = None) -> Result:
  """Runs the phase's remaining epochs; see the module docstring.

  Args:
    phase: what the phase supplies.
    state: the restored or fresh state (a dict with a 'step').
    meta: its meta (`restore`).
    ckpt: the phase's `checkpointing.Checkpointer`.
    log: the phase's `runlog.RunLog` (the caller closes it).
    stop_after_epochs: end after that many epochs in total, a checkpoint
      saved first, raising `runlog.Interrupted` (signum None): a stand-in
      for a killed run in tests.
  Returns:
    The last state and meta, and the best one (phases that evaluate).
  Raises:
    runlog.Interrupted: a stop request (in any epoch, the last included) or
      `stop_after_epochs`.
    FloatingPointError: a non-finite loss.
  """
  stop = runlog.StopSignal()
  try:
    state, meta = _epochs(phase, state, dict(meta), ckpt, log, stop,
                          stop_after_epochs)
  finally:
    stop.restore()
  if phase.evaluate is None:
    return Result(state, meta)
  if ckpt.best_step() is None:  # never evaluated: no epoch ran
    ckpt.save_best(int(state["step"]), state, {"epoch": meta["epoch"]})
    meta["best_epoch"] = meta["epoch"]
  best_state, best_meta = ckpt.restore_best(state)
  # A damaged newest best save falls back to the previous one (a warning
  # says so); report the epoch of the one used.
  meta["best_epoch"] = best_meta.get("epoch", meta["best_epoch"])
  return Result(state, meta, best_state)


@jax.jit
def _add(acc: dict, metrics: dict) -> dict:
  return {k: acc[k] + v for k, v in metrics.items()}


def _to_host(acc: dict) -> dict:
  """Device sums as JSON numbers (exact: float32 fits a float)."""
  return {k: np.asarray(v).item() for k, v in jax.device_get(acc).items()}


def _to_device(sums: Optional[dict]) -> Optional[dict]:
  if sums is None:
    return None
  return {k: jnp.asarray(v, jnp.float32 if isinstance(v, float) else
                         jnp.int32) for k, v in sums.items()}


def _means(sums: dict, steps: int, count_key: Optional[str]) -> dict:
  n = steps if count_key is None else max(float(sums[count_key]), 1.0)
  return {k: float(v) / n for k, v in sums.items() if k != count_key}


def _save(ckpt, state, meta: dict, phase: Phase) -> None:
  ckpt.save(int(state["step"]), state, {**meta, **phase.meta})


class _Progress:
  """Step-level progress lines of one process."""

  def __init__(self, phase: Phase):
    self.phase = phase
    self.lines, self.last, self.epoch, self.step = 0, time.time(), None, 0

  def after_step(self, epoch: int, done: int, skip: int, n: int,
                 t_epoch: float, acc: dict) -> None:
    """A line every log_every_steps steps, after the process's first step
    (compilation included), and whenever runlog.PROGRESS_SECONDS passed;
    the clock is read on the host, the sums fetched (a sync) only here."""
    every = self.phase.log_every_steps
    if not ((every and done % every == 0) or not self.lines or
            time.time() - self.last >= runlog.PROGRESS_SECONDS):
      return
    loss = _means(jax.device_get(acc), done, self.phase.count_key)["loss"]
    now = time.time()
    # The rate since the last line of this epoch (or its start): the first
    # step's compilation does not inflate later ETAs.
    if self.epoch == epoch:
      rate = (done - self.step) / max(now - self.last, 1e-9)
    else:
      rate = (done - skip) / max(now - t_epoch, 1e-9)
    eta = ("" if not self.lines else
           f"  eta epoch {runlog.fmt_secs((n - done) / rate)}")
    logging.info("%sepoch %d  %d/%d steps  loss %.4f%s%s", self.phase.prefix,
                 epoch, done, n, loss, eta,
                 "" if self.lines else
                 f"  (first step, compilation included: {now - t_epoch:.1f}s)")
    self.lines, self.last, self.epoch, self.step = (self.lines + 1, now,
                                                    epoch, done)


def evaluates_at(epoch: int, num_epochs: int, eval_every: int) -> bool:
  """Whether a phase evaluates after `epoch`: every `eval_every` epochs and
  at its last (`num_epochs`); eval_every 0: never."""
  return bool(eval_every) and (epoch % eval_every == 0 or epoch == num_epochs)


def eta_seconds(epoch: int, num_epochs: int, eval_every: int,
                epoch_secs: list, eval_secs: list) -> float:
  """Seconds left in a phase after training epoch `epoch`, up to its cap.

  The epochs left cost the median of the last three of this process's
  epoch times (`epoch_secs`: its first epochs carry the compilation and soon
  drop out); the evaluations left, this epoch's included, the median of the
  last three of `eval_secs` (none yet: not counted). eval_every 0: no
  evaluations.
  """
  med = lambda xs: float(np.median(xs[-3:])) if xs else 0.0
  evals = sum(evaluates_at(e, num_epochs, eval_every)
              for e in range(epoch, num_epochs + 1))
  return (num_epochs - epoch) * med(epoch_secs) + evals * med(eval_secs)


def _epochs(phase: Phase, state, meta: dict, ckpt, log, stop,
            stop_after_epochs: Optional[int]):
  """Runs epochs until the end, an early stop or a stop request."""
  progress = _Progress(phase)
  epoch = meta["epoch"]
  epoch_secs, eval_secs = [], []      # this process's, for the ETA
  while not meta["early_stopped"] and epoch < phase.num_epochs:
    epoch += 1
    t_epoch = time.time()
    # A run stopped mid-epoch resumes after the batches it had done; the
    # batch order is a function of (seed, epoch), so nothing is repeated.
    skip = meta.pop("batches_done", 0)
    acc = _to_device(meta.pop("step_sums", None))
    losses = []
    # The step counter on the host: one read an epoch, not a sync a step.
    n, batches = phase.batches(epoch, skip, int(state["step"]))
    for i, batch in enumerate(batches, start=skip):
      state, m = phase.train_step(state, batch)
      losses.append(m["loss"])
      if acc is None:
        acc = dict(m)
      else:
        if acc.keys() != m.keys():  # a save of older code summed the loss
          acc = {k: acc[k] if k in acc else jnp.zeros_like(v)
                 for k, v in m.items()}
        acc = _add(acc, m)
      progress.after_step(epoch, i + 1, skip, n, t_epoch, acc)
      if stop.agreed(i + 1) and i + 1 < n:
        check_finite(losses, state, ckpt, phase.hint)
        meta.update(epoch=epoch - 1, batches_done=i + 1,
                    step_sums=_to_host(acc),
                    train_seconds=meta["train_seconds"] + time.time() -
                    t_epoch)
        _save(ckpt, state, meta, phase)
        raise runlog.Interrupted(
            f"{stop.name}: checkpoint saved in {phase.prefix}epoch {epoch} "
            f"after batch {i + 1} of {n} (step {int(state['step'])})",
            stop.signum)
    check_finite(losses, state, ckpt, phase.hint)
    sums = jax.device_get(acc)                      # one sync per epoch
    dt = time.time() - t_epoch
    meta["train_seconds"] += dt
    rate = (n - skip) / n * phase.examples_per_epoch / dt
    text, fields = phase.summarize(_means(sums, n, phase.count_key), rate, dt)
    epoch_secs.append(dt * n / max(n - skip, 1))   # a resumed part-epoch
    eta = eta_seconds(epoch, phase.num_epochs,
                      phase.eval_every if phase.evaluate else 0,
                      epoch_secs, eval_secs)
    logging.info("%sepoch %d/%d  %s  %.1fs  eta %s", phase.prefix, epoch,
                 phase.num_epochs, text, dt, runlog.fmt_secs(eta))
    record = {"epoch": epoch, "step": int(state["step"]), **fields}
    if phase.evaluate is not None and evaluates_at(epoch, phase.num_epochs,
                                                   phase.eval_every):
      _evaluate(phase, state, meta, ckpt, epoch, record)
      eval_secs.append(record["eval_seconds"])
    if phase.after_epoch is not None:
      phase.after_epoch(state, epoch)
    log.write(record, int(state["step"]))
    meta["epoch"] = epoch
    last = epoch == phase.num_epochs or meta["early_stopped"]
    halt = stop.agreed(None) or (stop_after_epochs is not None and
                                 epoch >= stop_after_epochs)
    every = phase.checkpoint_every
    if last or halt or (every > 0 and epoch % every == 0):
      _save(ckpt, state, meta, phase)
    # A signal stops the run even after the phase's last epoch: the phase is
    # saved as finished, and what would follow it (evaluation, inference, the
    # next phase) runs on the rerun, which finds this loop done.
    if halt and (not last or stop.requested):
      raise runlog.Interrupted(
          f"stopped after {phase.prefix}epoch {epoch}" +
          (f" ({stop.name})" if stop.requested else ""), stop.signum)
  return state, meta


def _evaluate(phase: Phase, state, meta: dict, ckpt, epoch: int,
              record: dict) -> None:
  """Validation metrics into `record`; best save, early-stop bookkeeping."""
  t_eval = time.time()
  valid = phase.evaluate(state)
  record.update({f"valid/{k}": v for k, v in valid.items()})
  record["eval_seconds"] = round(time.time() - t_eval, 3)
  logging.info("%sepoch %d valid %s", phase.prefix, epoch,
               runlog.fmt_metrics(valid))
  score = valid[phase.metric]
  if meta["best_score"] is None or score > meta["best_score"]:
    meta.update(best_score=score, best_epoch=epoch, bad_evals=0)
    ckpt.save_best(int(state["step"]), state, {"epoch": epoch,
                                               "valid": valid})
    return
  meta["bad_evals"] += 1
  if meta["bad_evals"] >= phase.patience:
    logging.info("%searly stop at epoch %d: no better %s in %d evaluations "
                 "(best %.4f at epoch %d)", phase.prefix, epoch, phase.metric,
                 phase.patience, meta["best_score"], meta["best_epoch"])
    meta["early_stopped"] = True


def check_finite(losses: list, state, ckpt, hint: str = DEFAULT_HINT) -> None:
  """Stops the run at the first non-finite loss, naming the step.

  `losses` are the device scalars of the last len(losses) steps; one host
  transfer for all of them. The state is not saved, so the latest
  checkpoint stays the last good one.
  """
  if not losses:
    return
  values = np.asarray(jax.device_get(jnp.stack(losses)))
  bad = np.flatnonzero(~np.isfinite(values))
  if bad.size:
    step = int(state["step"]) - len(losses) + int(bad[0]) + 1
    last = ckpt.latest_step()
    kept = (f"The last good checkpoint (step {last}) is kept in "
            f"{ckpt.directory}" if last is not None else
            "No checkpoint was saved before it (a rerun starts over)")
    raise FloatingPointError(
        f"loss is {values[bad[0]]} at step {step}; stopping. {kept}; {hint}")
