"""benchmarks/cell_cost.py: --overrides reach the timed config, or name
what is wrong with them."""

import pytest

from benchmarks import cell_cost

S8K = ("--config.train.negative_sampler=popularity "
       "--config.train.num_negatives=8192")


def test_overrides_take_the_field_types_in_every_setting():
  for setting in cell_cost.SETTINGS:
    c = cell_cost.load_config(
        "beauty", setting, S8K + " --config.augment.reorder=false "
        "--config.train.length_buckets=(16,)")
    assert c.train.num_negatives == 8192
    assert isinstance(c.train.num_negatives, int)
    assert c.train.negative_sampler == "popularity"
    assert c.augment.reorder is False
    assert c.train.length_buckets == (16,)
  # The sampled setting switches the loss; an override can switch it back.
  assert cell_cost.load_config("beauty", "sampled").train.loss == "sampled_ce"
  assert cell_cost.load_config(
      "beauty", "sampled", "--config.train.loss=ce").train.loss == "ce"


@pytest.mark.parametrize("text, match", [
    ("--config.train.num_negativs=8", "no field 'train.num_negativs'"),
    ("--config.trian.lr=0.1", "no field 'trian.lr'"),
    ("--config.augment.reorder=flase", r"'flase' does not read as .*\(bool\)"),
    ("--config.train.num_negatives=many", r"'many' does not read as .*\(int\)"),
    ("train.num_negatives=8", "expected --config.field=value"),
    ("--config.train.num_negatives", "expected --config.field=value"),
])
def test_bad_overrides_are_named(text, match):
  with pytest.raises(ValueError, match=match):
    cell_cost.load_config("beauty", "strong", text)


def test_base_only_times_no_aug_epoch_and_no_generator(monkeypatch, capsys):
  modes = []

  def fake_time_recommender(config, ds, mode, epochs):
    modes.append((mode, config.train.num_negatives))
    return 2.0, 1.0

  def no_generator(*args):
    raise AssertionError("--base_only must not time the generator")

  monkeypatch.setattr(cell_cost, "time_recommender", fake_time_recommender)
  monkeypatch.setattr(cell_cost, "time_generator", no_generator)
  monkeypatch.setattr(cell_cost.prepare, "ensure_for_config", lambda c: None)
  monkeypatch.setattr(cell_cost.data_lib, "load", lambda c: None)
  monkeypatch.setattr("sys.argv", [
      "cell_cost.py", "--datasets=beauty", "--settings=sampled",
      "--base_only", "--epochs=2", "--cell_epochs=10",
      "--overrides=--config.train.num_negatives=4096"])
  cell_cost.main()
  assert modes == [("base", 4096)]
  rows = [l for l in capsys.readouterr().out.splitlines()
          if l.startswith("| beauty")]
  # 10 epochs x 2 s + 10 / eval_every (5) x 1 s = 22 s: 0 min.
  assert rows == ["| beauty | sampled (sampled_ce) | 2.0 | — | — | 1.0 | — "
                  "| — | 10 | 0 | — |"]


def test_full_row_times_aug_and_generator(monkeypatch, capsys):
  monkeypatch.setattr(cell_cost, "time_recommender",
                      lambda c, ds, mode, epochs: (
                          (2.0, 1.0) if mode == "base" else (5.0, 1.0)))
  monkeypatch.setattr(cell_cost, "time_generator", lambda c, ds, e: (3.0, 4.0))
  monkeypatch.setattr(cell_cost.prepare, "ensure_for_config", lambda c: None)
  monkeypatch.setattr(cell_cost.data_lib, "load", lambda c: None)
  monkeypatch.setattr("sys.argv", [
      "cell_cost.py", "--datasets=beauty", "--settings=paper",
      "--cell_epochs=100"])
  cell_cost.main()
  rows = [l for l in capsys.readouterr().out.splitlines()
          if l.startswith("| beauty")]
  # base cell 100 x 2 + 20 x 1 = 220 s; aug cell: generator 10 x 3 + 4,
  # warm-up 10 x 2, 100 x 5, evaluations 20: 574 s.
  assert rows == ["| beauty | paper (bce) | 2.0 | 5.0 | x2.50 | 1.0 | 3.0 "
                  "| 4.0 | 100 | 4 | 10 |"]
