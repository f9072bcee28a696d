"""The layout rules of docs/architecture.md, checked on the source (issue 23).

Every import is read from the syntax tree, those inside functions too, so a
lazy import cannot hide a cycle or a layer crossed upwards.
"""

import ast
import os

import pytest

from conftest import REPO

PACKAGE = "diff4rec_jax"
MAX_LINES = 550   # "no module over about 500 lines"

# Array modules take arrays and return arrays: no configs, files, run state.
ARRAY_MODULES = ("models", "losses", "metrics", "diffusion", "augment",
                 "curriculum", "candidates")
NOT_IN_ARRAY_MODULES = ("ml_collections", "orbax", "absl", "tensorboardX",
                        "diff4rec_jax.config_lib", "diff4rec_jax.checkpointing",
                        "diff4rec_jax.runlog", "diff4rec_jax.rundir",
                        "diff4rec_jax.data", "diff4rec_jax.datasets",
                        "diff4rec_jax.train", "diff4rec_jax.generator",
                        "diff4rec_jax.pool", "diff4rec_jax.steps",
                        "diff4rec_jax.input_pipeline")
# Phase drivers and entry points: nothing below them may import them.
UPPER = ("diff4rec_jax.main", "diff4rec_jax.train", "diff4rec_jax.generator",
         "diff4rec_jax.recommend", "diff4rec_jax.recommender",
         "diff4rec_jax.export")


def _modules() -> dict:
  """{dotted module name: path} of every module of the package."""
  out = {}
  for dirpath, _, files in os.walk(os.path.join(REPO, PACKAGE)):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(dirpath, f)
        name = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
        out[name.removesuffix(".__init__")] = path
  return out


def imports_of(path: str, package: str, modules=()) -> set:
  """Every module `path` imports (top level or in a function), dotted;
  relative imports resolved against `package`. `from pkg import sub` counts
  as importing `pkg.sub` alone when `pkg.sub` is one of `modules`."""
  with open(path) as f:
    tree = ast.parse(f.read())
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
      subs = {f"{base}.{a.name}" for a in node.names}
      out.update(subs)
      if not subs <= set(modules):
        out.add(base)
  return out


def import_graph() -> dict:
  mods = _modules()
  graph = {}
  for name, path in mods.items():
    pkg = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    graph[name] = {m for m in imports_of(path, pkg, mods) if m in mods} - {name}
  return graph


def find_cycle(graph: dict):
  """One import cycle as a list of modules, or None."""
  state = {}

  def visit(node, stack):
    state[node] = "open"
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt, stack + [nxt])
        if found:
          return found
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node, [node])
      if found:
        return found
  return None


def test_find_cycle_sees_a_cycle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c",
                                                              "a"]
  assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycles():
  cycle = find_cycle(import_graph())
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_lazy_imports_are_seen(tmp_path):
  p = tmp_path / "m.py"
  p.write_text("def f():\n  from diff4rec_jax import train\n"
               "  import ml_collections\n")
  got = imports_of(str(p), "diff4rec_jax")
  assert {"diff4rec_jax.train", "ml_collections"} <= got


@pytest.mark.parametrize("module", ARRAY_MODULES)
def test_array_modules_import_no_configs_files_or_drivers(module):
  mods = _modules()
  names = [m for m in mods if m == f"{PACKAGE}.{module}" or
           m.startswith(f"{PACKAGE}.{module}.")]
  assert names, module
  for name in names:
    pkg = name if mods[name].endswith("__init__.py") else name.rsplit(".", 1)[0]
    bad = sorted(i for i in imports_of(mods[name], pkg)
                 if any(i == b or i.startswith(b + ".")
                        for b in NOT_IN_ARRAY_MODULES))
    assert not bad, f"{name} imports {bad}"


def test_nothing_imports_a_driver_from_below():
  graph = import_graph()
  for name, deps in graph.items():
    if name in UPPER:
      continue
    up = sorted(deps & set(UPPER))
    assert not up, f"{name} (below the drivers) imports {up}"


def test_data_loader_does_not_reach_dataset_preparation():
  graph = import_graph()
  seen, todo = set(), [f"{PACKAGE}.data"]
  while todo:
    m = todo.pop()
    if m not in seen:
      seen.add(m)
      todo.extend(graph.get(m, ()))
  assert not [m for m in seen if m.startswith(f"{PACKAGE}.datasets")]


def test_no_module_over_the_line():
  long = {name: n for name, path in _modules().items()
          if (n := sum(1 for _ in open(path))) > MAX_LINES}
  assert not long, f"modules over {MAX_LINES} lines: {long}"
