"""Config files read as tables: dataset configs hold only what differs."""

import ast
import importlib
import os

import pytest

from conftest import REPO
from configs import base


def _assignments(path):
  """(field path, line) of every `c.<block>.<field> = value` in a file."""
  tree = ast.parse(open(path).read())
  for node in ast.walk(tree):
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
      t, parts = node.targets[0], []
      while isinstance(t, ast.Attribute):
        parts.append(t.attr)
        t = t.value
      if isinstance(t, ast.Name) and t.id == "c" and parts:
        yield ".".join(reversed(parts)), node.lineno


@pytest.mark.parametrize("name", ["beauty", "yelp", "ml1m", "steam", "tiny"])
def test_dataset_configs_set_only_what_differs_from_base(name):
  want = base.get_config()
  got = importlib.import_module(f"configs.{name}").get_config()
  for field, line in _assignments(os.path.join(REPO, "configs",
                                               f"{name}.py")):
    if field == "data.name":       # a dataset config names its dataset
      continue
    node_w, node_g = want, got
    for part in field.split("."):
      node_w, node_g = node_w[part], node_g[part]
    assert node_g != node_w, (
        f"configs/{name}.py:{line} sets {field} to base.py's value "
        f"{node_w!r}: leave it to base.py")
