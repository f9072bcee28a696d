"""benchmarks/cell_cost.py: the --set overrides reach the timed config."""

import pytest

from benchmarks import cell_cost


def test_set_casts_to_field_type_in_every_setting():
  for setting in cell_cost.SETTINGS:
    c = cell_cost.load_config(
        "beauty", setting,
        "train.negative_sampler=popularity,train.num_negatives=8192,"
        "augment.reorder=false")
    assert c.train.num_negatives == 8192
    assert isinstance(c.train.num_negatives, int)
    assert c.train.negative_sampler == "popularity"
    assert c.augment.reorder is False
  # The sampled setting still switches the loss; --set can switch it back.
  assert cell_cost.load_config("beauty", "sampled").train.loss == "sampled_ce"
  assert cell_cost.load_config(
      "beauty", "sampled", "train.loss=ce").train.loss == "ce"


def test_set_unknown_field_names_it():
  with pytest.raises(KeyError, match="train.num_negativs"):
    cell_cost.load_config("beauty", "strong", "train.num_negativs=8")
