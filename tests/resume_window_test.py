"""Resume after a kill between a best save and the next `latest` save.

The run below (ML-100K, tiny.py at lr 3e-3, evaluated every epoch) improves
in epoch 7, not in 8, and again in 9; `latest` is saved at epoch 7. Killed
right after epoch 9's best save, the rerun resumes at epoch 7, replays
epoch 8 (no improvement over what epoch 7's meta knows) and improves at the
very step that is already in best/: before the fix every rerun died with
Orbax's StepAlreadyExistsError.
"""

import numpy as np
import pytest

from diff4rec_jax import checkpointing
from diff4rec_jax import train


class _Killed(BaseException):
  """Stands for kill -9: nothing after it runs (no handler catches it)."""


def test_kill_after_best_save_then_rerun_matches_straight_run(
    tiny_config, tmp_path, monkeypatch):
  c = tiny_config
  c.train.lr = 3e-3
  c.train.num_epochs = 10
  c.train.eval_every = 1
  c.train.checkpoint_every = 7
  c.train.patience = 5
  want = train.train_and_evaluate(c, str(tmp_path / "straight"))

  wd = str(tmp_path / "killed")
  real_save_best = checkpointing.Checkpointer.save_best
  saved_best = []

  def save_best_then_die_at_epoch_9(self, step, state, meta):
    real_save_best(self, step, state, meta)
    saved_best.append(meta["epoch"])
    if meta["epoch"] == 9:
      raise _Killed()

  monkeypatch.setattr(checkpointing.Checkpointer, "save_best",
                      save_best_then_die_at_epoch_9)
  with pytest.raises(_Killed):
    train.train_and_evaluate(c, wd)
  monkeypatch.undo()
  # The trajectory this test is about: 7 improves, 8 does not, 9 does.
  assert saved_best[-2:] == [7, 9], saved_best

  got = train.train_and_evaluate(c, wd)
  assert got["best_epoch"] == want["best_epoch"]
  assert got["valid"] == want["valid"] and got["test"] == want["test"]


def test_checkpointer_keeps_the_best_save_a_resume_needs(tmp_path):
  state = {"w": np.arange(3.0)}
  ck = checkpointing.Checkpointer(str(tmp_path / "c"))
  ck.save_best(2, state, {"epoch": 2})
  ck.save(3, state, {"epoch": 3, "best_epoch": 2})
  ck.save_best(5, state, {"epoch": 5})
  ck.close()
  # Killed here: latest = 3 (its meta knows best 2), best saves 2 and 5.
  ck = checkpointing.Checkpointer(str(tmp_path / "c"))
  _, meta = ck.restore(state)
  assert ck.best_step() == meta["best_epoch"] == 2
  ck.save_best(5, state, {"epoch": 5})     # the replay improves at step 5
  ck.save(6, state, {"epoch": 6, "best_epoch": 5})
  assert ck.best_step() == 5
  _, best_meta = ck.restore_best(state)
  assert best_meta["epoch"] == 5
  ck.close()
