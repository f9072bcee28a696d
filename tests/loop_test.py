"""Tests of the training-loop skeleton (loop.py) with a tiny fake phase.

The fake state is a scalar `w` and a step counter; a step adds the batch's
value to `w` and reports the old `w` as its loss, so every result is a sum
that can be written down by hand. Checkpoints and the metrics file are the
real ones (checkpointing.py, runlog.py).
"""

import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diff4rec_jax import checkpointing
from diff4rec_jax import loop
from diff4rec_jax import runlog

STEPS = 4   # batches an epoch


def batch_value(epoch, k):
  return float(10 * epoch + k)


@jax.jit
def _step(state, batch):
  w = state["w"]
  return ({"w": w + batch, "step": state["step"] + 1},
          {"loss": w, "aux": 2.0 * w})


class Fake:
  """A phase over one folder; counts steps, can poison or signal one."""

  def __init__(self, root, scores=None, nan_at=None, sigterm_at=None,
               **phase_kwargs):
    self.root = str(root)
    os.makedirs(self.root, exist_ok=True)
    self.steps = 0
    self.scores = scores
    self.nan_at, self.sigterm_at = nan_at, sigterm_at
    self.kwargs = dict(num_epochs=5, checkpoint_every=2, patience=2)
    self.kwargs.update(phase_kwargs)

  def phase(self):

    def batches(epoch, skip, step):
      del step
      return STEPS, (jnp.float32(batch_value(epoch, k))
                     for k in range(skip, STEPS))

    def train_step(state, batch):
      self.steps += 1
      state, m = _step(state, batch)
      if self.sigterm_at == int(state["step"]):
        signal.raise_signal(signal.SIGTERM)
      if self.nan_at is not None and int(state["step"]) >= self.nan_at:
        m = dict(m, loss=jnp.float32(np.nan))
      return state, m

    def summarize(means, rate, seconds):
      return f"loss {means['loss']:.1f}", {"loss": means["loss"],
                                           "aux": means["aux"],
                                           "seconds": seconds, "rate": rate}

    evaluate = None
    if self.scores is not None:
      evaluate = lambda state: {"score": self.scores[float(state["w"])]}
    return loop.Phase(name="fake", batches=batches, train_step=train_step,
                      summarize=summarize, examples_per_epoch=8,
                      evaluate=evaluate, metric="score", **self.kwargs)

  def run(self, **kw):
    """restore + train, as a phase driver does; returns the Result."""
    ckpt = checkpointing.Checkpointer(os.path.join(self.root, "ckpt"))
    try:
      state, meta = loop.restore(
          ckpt, {"w": jnp.float32(0.0), "step": jnp.int32(0)}, what="fake")
      log = runlog.RunLog(self.root, meta["epoch"])
      try:
        return loop.train(self.phase(), state, meta, ckpt, log, **kw)
      finally:
        log.close()
    finally:
      ckpt.close()

  def rows(self):
    with open(os.path.join(self.root, "metrics.jsonl")) as f:
      return [{k: v for k, v in json.loads(l).items()
               if k not in ("seconds", "rate", "eval_seconds")} for l in f]


def w_after(epochs):
  return sum(batch_value(e, k) for e in range(1, epochs + 1)
             for k in range(STEPS))


def test_straight_run_sums_and_rows(tmp_path):
  f = Fake(tmp_path)
  r = f.run()
  assert f.steps == 5 * STEPS
  assert float(r.state["w"]) == w_after(5) and int(r.state["step"]) == 20
  assert r.best_state is None and r.meta["epoch"] == 5
  rows = f.rows()
  assert [x["epoch"] for x in rows] == [1, 2, 3, 4, 5]
  # Epoch 2's mean loss: the mean of w before each of its 4 steps.
  w1 = w_after(1)
  losses = [w1 + sum(batch_value(2, j) for j in range(k))
            for k in range(STEPS)]
  assert rows[1]["loss"] == pytest.approx(np.mean(losses))
  assert rows[1]["aux"] == pytest.approx(2 * np.mean(losses))
  # A finished run's rerun runs no step and changes nothing.
  before = f.rows()
  r2 = f.run()
  assert f.steps == 5 * STEPS and f.rows() == before
  assert float(r2.state["w"]) == w_after(5)


def test_early_stop_after_patience_evaluations_without_improvement(
    tmp_path):
  # Scores by the value of w after each epoch: better at 2, then 2 worse.
  scores = {w_after(1): 0.1, w_after(2): 0.3, w_after(3): 0.2,
            w_after(4): 0.25, w_after(5): 0.9}
  f = Fake(tmp_path, scores=scores, patience=2)
  r = f.run()
  assert r.meta["epoch"] == 4 and r.meta["early_stopped"]
  assert r.meta["best_epoch"] == 2 and r.meta["best_score"] == 0.3
  assert float(r.best_state["w"]) == w_after(2)
  assert float(r.state["w"]) == w_after(4)
  assert [x["valid/score"] for x in f.rows()] == [0.1, 0.3, 0.2, 0.25]
  # A rerun of the stopped run does no step and keeps the best.
  r2 = f.run()
  assert f.steps == 4 * STEPS and float(r2.best_state["w"]) == w_after(2)


def test_resume_from_a_mid_run_checkpoint_continues_the_same_epochs(
    tmp_path):
  scores = {w_after(e): s for e, s in enumerate([.1, .3, .2, .4, .35], 1)}
  straight = Fake(tmp_path / "a", scores=scores, patience=3)
  want = straight.run()
  f = Fake(tmp_path / "b", scores=scores, patience=3)
  with pytest.raises(runlog.Interrupted, match="stopped after fake epoch 3"
                     ) as e:
    f.run(stop_after_epochs=3)
  assert e.value.signum is None
  assert [x["epoch"] for x in f.rows()] == [1, 2, 3]
  got = f.run()
  assert f.steps == 5 * STEPS              # no epoch ran twice
  assert float(got.state["w"]) == float(want.state["w"])
  assert float(got.best_state["w"]) == float(want.best_state["w"])
  assert got.meta["best_epoch"] == want.meta["best_epoch"] == 4
  assert f.rows() == straight.rows()


def test_resume_drops_rows_after_the_checkpoint(tmp_path, monkeypatch):
  """Killed in epoch 4's save, the last checkpoint at 2 (checkpoint_every
  2): the rerun redoes epochs 3 and 4, and their rows appear once."""
  straight = Fake(tmp_path / "a")
  straight.run()
  f = Fake(tmp_path / "b")
  real = checkpointing.Checkpointer.save

  class Killed(BaseException):
    """Stands for kill -9: no handler catches it."""

  def die_at_epoch_4(self, step, state, meta):
    if meta["epoch"] >= 4:
      raise Killed()
    real(self, step, state, meta)

  monkeypatch.setattr(checkpointing.Checkpointer, "save", die_at_epoch_4)
  with pytest.raises(Killed):
    f.run()
  monkeypatch.undo()
  assert [x["epoch"] for x in f.rows()] == [1, 2, 3, 4]
  f.run()
  assert f.rows() == straight.rows()


def test_sigterm_saves_mid_epoch_and_the_rerun_matches(tmp_path):
  straight = Fake(tmp_path / "a")
  want = straight.run()
  f = Fake(tmp_path / "b", sigterm_at=6)   # epoch 2, after its 2nd batch
  handler = signal.getsignal(signal.SIGTERM)
  with pytest.raises(runlog.Interrupted, match="SIGTERM: checkpoint saved "
                     "in fake epoch 2 after batch 2 of 4") as e:
    f.run()
  assert e.value.signum == signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) == handler   # handler restored
  ckpt = checkpointing.Checkpointer(os.path.join(f.root, "ckpt"))
  _, meta = ckpt.restore({"w": jnp.float32(0.0), "step": jnp.int32(0)})
  ckpt.close()
  assert meta["epoch"] == 1 and meta["batches_done"] == 2
  assert meta["step_sums"]["loss"] == sum(
      w_after(1) + sum(batch_value(2, j) for j in range(k)) for k in range(2))
  f.sigterm_at = None
  got = f.run()
  assert f.steps == 5 * STEPS
  assert float(got.state["w"]) == float(want.state["w"])
  assert f.rows() == straight.rows()     # epoch 2's mean over all 4 steps


def test_sigterm_in_the_last_epoch_still_stops(tmp_path):
  """A stop that comes in a phase's last epoch is not lost: the phase is
  saved as finished and the run stops; the rerun finds the loop done (no
  step repeated) and returns what a straight run returns."""
  scores = {w_after(e): s for e, s in enumerate([.1, .3, .4, .2, .35], 1)}
  straight = Fake(tmp_path / "straight", scores=scores, patience=3)
  want = straight.run()
  f = Fake(tmp_path / "b", scores=scores, patience=3,
           sigterm_at=5 * STEPS)                   # the last epoch's last step
  handler = signal.getsignal(signal.SIGTERM)
  with pytest.raises(runlog.Interrupted,
                     match=r"stopped after fake epoch 5 \(SIGTERM\)") as e:
    f.run()
  assert e.value.signum == signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) == handler
  assert [r["epoch"] for r in f.rows()] == [1, 2, 3, 4, 5]
  f.sigterm_at = None
  got = f.run()
  assert f.steps == 5 * STEPS
  assert got.meta["epoch"] == 5 and got.meta["best_epoch"] == 3
  assert float(got.best_state["w"]) == float(want.best_state["w"])
  assert f.rows() == straight.rows()


def test_non_finite_loss_stops_naming_the_step(tmp_path):
  f = Fake(tmp_path, nan_at=7)
  with pytest.raises(FloatingPointError, match="at step 7") as e:
    f.run()    # in epoch 2, before the first checkpoint (every 2 epochs)
  assert "No checkpoint was saved before it" in str(e.value)
  f = Fake(tmp_path / "b", nan_at=11)
  with pytest.raises(FloatingPointError,
                     match=r"at step 11.*last good checkpoint \(step 8\)"):
    f.run()


def test_checkpoint_every_zero_saves_at_the_end_and_before_a_stop(
    tmp_path, monkeypatch):
  f = Fake(tmp_path, checkpoint_every=0)
  saved = []
  real = checkpointing.Checkpointer.save

  def spy(self, step, state, meta):
    saved.append(meta["epoch"])
    real(self, step, state, meta)

  monkeypatch.setattr(checkpointing.Checkpointer, "save", spy)
  with pytest.raises(runlog.Interrupted):
    f.run(stop_after_epochs=2)
  f.run()
  assert saved == [2, 5]


def test_a_save_of_older_code_resumes(tmp_path):
  """A recommender save from before loop.py: best_ndcg10, finished and a
  mid-epoch loss_partial (the loss sum only)."""
  straight = Fake(tmp_path / "a")
  straight.run()
  f = Fake(tmp_path / "b")
  with pytest.raises(runlog.Interrupted):
    f.run(stop_after_epochs=1)
  # Rewrite that save as older code would have made it, 2 batches into
  # epoch 2.
  ckpt = checkpointing.Checkpointer(os.path.join(f.root, "ckpt"))
  w = w_after(1) + batch_value(2, 0) + batch_value(2, 1)
  partial = 2 * w_after(1) + batch_value(2, 0)
  ckpt.save(6, {"w": jnp.float32(w), "step": jnp.int32(6)},
            {"epoch": 1, "best_ndcg10": -1.0, "best_epoch": 0,
             "bad_evals": 0, "finished": False, "train_seconds": 1.0,
             "batches_done": 2, "loss_partial": partial})
  ckpt.close()
  got = f.run()
  assert float(got.state["w"]) == w_after(5)
  rows, want = f.rows(), straight.rows()
  assert rows[1]["loss"] == want[1]["loss"]
  assert [{k: v for k, v in r.items() if k != "aux"} for r in rows] == [
      {k: v for k, v in r.items() if k != "aux"} for r in want]
  meta = loop._upgrade(  # pylint: disable=protected-access
      {"epoch": 3, "best_ndcg10": 0.2, "finished": True})
  assert meta["best_score"] == 0.2 and meta["early_stopped"]
  assert "best_ndcg10" not in meta and "finished" not in meta


def test_eta_drops_the_compilation_epochs_and_counts_evaluations():
  # Epochs 1-3 compile (145, 105, 72 s), then 12 s; evaluations every 5.
  secs = [145.0, 105.0, 72.0, 12.0, 12.5]
  # After epoch 5 of 200: 195 epochs at the last three's median (12.5 s);
  # no evaluation timed yet.
  assert loop.eta_seconds(5, 200, 5, secs, []) == pytest.approx(195 * 12.5)
  # Evaluations left after epoch 6: 10, 15, ..., 200 (39), at the median
  # of the last three (7 s; the first one's 30 s compile dropped out).
  assert loop.eta_seconds(6, 200, 5, secs + [12.0], [30.0, 7.0, 7.0, 6.0]) \
      == pytest.approx(194 * 12.0 + 39 * 7.0)
  # Epoch 5 itself is evaluated after its line: it counts; so does the cap.
  assert loop.eta_seconds(5, 12, 5, [10.0], [2.0]) == pytest.approx(
      7 * 10.0 + 3 * 2.0)               # epochs 5, 10, 12
  assert loop.eta_seconds(200, 200, 5, [10.0], [2.0]) == pytest.approx(2.0)
  assert loop.eta_seconds(3, 10, 0, [4.0], []) == pytest.approx(28.0)
