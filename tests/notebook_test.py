"""launch/colab.ipynb: valid nbformat 4, and its code runs as written.

The code cells are executed in order with exec() in one namespace, as a
kernel would, except the cell tagged "install" (it clones and pip-installs;
here the checkout and the staged data already exist). Shell (`!`) and magic
(`%`) lines are dropped. The notebook reads its settings from environment
variables, which point it at the staged ML-100K, this checkout and a tmp
workdir, and shrink the run (2 epochs).
"""

import contextlib
import io
import json
import os
import re
import sys
import types

import numpy as np
import pytest

from conftest import REPO

NOTEBOOK = os.path.join(REPO, "launch", "colab.ipynb")
# Same shrunk tiny config as sharding_test / distributed_test, so that the
# session's compilation cache can serve it.
OVERRIDES = ("train.num_epochs=2 train.eval_every=1 data.max_len=20 "
             "model.hidden=16 train.eval_batch_size=256")


def load_notebook():
  with open(NOTEBOOK) as f:
    return json.load(f)


def cell_code(cell) -> str:
  """A code cell's Python: `!` shell and `%` magic lines dropped."""
  return "".join(l for l in cell["source"]
                 if not l.lstrip().startswith(("!", "%")))


def tags(cell):
  return cell.get("metadata", {}).get("tags", [])


def run_cells(cells, namespace):
  for i, cell in enumerate(cells):
    exec(compile(cell_code(cell), f"<colab.ipynb cell {i}>", "exec"),  # pylint: disable=exec-used
         namespace)


@pytest.fixture(scope="module")
def executed(tmp_path_factory, data_dir):
  """(namespace, stdout, runnable code cells) after running the notebook."""
  workdir = tmp_path_factory.mktemp("colab") / "run"
  cells = [c for c in load_notebook()["cells"]
           if c["cell_type"] == "code" and "install" not in tags(c)]
  namespace = {"__name__": "__main__"}
  out = io.StringIO()
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("DIFF4REC_DATA_DIR", data_dir)
    mp.setenv("DIFF4REC_REPO_DIR", REPO)
    mp.setenv("DIFF4REC_NOTEBOOK_WORKDIR", str(workdir))
    mp.setenv("DIFF4REC_NOTEBOOK_OVERRIDES", OVERRIDES)
    # The text fallback of the plot cell, whether or not matplotlib is here.
    mp.setitem(sys.modules, "matplotlib", None)
    mp.setitem(sys.modules, "matplotlib.pyplot", None)
    mp.syspath_prepend(REPO)
    with contextlib.redirect_stdout(out):
      run_cells(cells, namespace)
  return namespace, out.getvalue(), cells


def test_valid_nbformat_4():
  nb = load_notebook()
  assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 4
  assert nb["metadata"]["kernelspec"]["language"] == "python"
  ids = [c["id"] for c in nb["cells"]]
  assert len(set(ids)) == len(ids)
  assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", i) for i in ids)
  for cell in nb["cells"]:
    assert cell["cell_type"] in ("markdown", "code")
    assert isinstance(cell["metadata"], dict)
    assert all(isinstance(l, str) for l in cell["source"])
    if cell["cell_type"] == "code":
      assert cell["outputs"] == [] and cell["execution_count"] is None
      compile(cell_code(cell), "<cell>", "exec")     # valid Python
  assert nb["cells"][0]["cell_type"] == "markdown"
  try:
    import nbformat  # pylint: disable=g-import-not-at-top
  except ImportError:
    return          # not a project dependency; the checks above stand in
  nbformat.validate(nbformat.reads(json.dumps(nb), as_version=4))


def test_install_cell():
  (install,) = [c for c in load_notebook()["cells"] if "install" in tags(c)]
  src = "".join(install["source"])
  assert 'if "<owner>" in REPO_URL' in src   # the placeholder is refused
  shell = [l.strip() for l in install["source"] if l.startswith("!")]
  assert any("git clone -q {REPO_URL} {REPO_DIR}" in l for l in shell)
  assert "!pip install -q -r {REPO_DIR}/requirements.txt" in shell
  assert any("python -m diff4rec_jax.datasets.prepare --dataset=ml-100k "
             "--data_dir={DATA_DIR}" in l for l in shell)
  settings = "".join(load_notebook()["cells"][1]["source"])
  assert re.search(r'^REPO_URL = "https://github.com/<owner>/diff4rec_jax.git"'
                   r"  # PLACEHOLDER", settings, re.M)


def test_notebook_trains_and_reports(executed):
  ns, out, _ = executed
  res = ns["results"]
  assert res["epochs_run"] == 2 and ns["config"].data.max_len == 20
  assert os.path.exists(os.path.join(ns["WORKDIR"], "results.json"))
  # The results table: one row per metric with the saved valid/test values.
  assert "| metric | valid | test |" in out
  for k in ("HR@10", "NDCG@10", "MRR"):
    assert f"| {k} | {res['valid'][k]:.4f} | {res['test'][k]:.4f} |" in out
  assert "ml-100k: 943 users" in out
  # The recommend cell: top 5 of users 1-3 after their whole ML-100K
  # history (none of it recommended), and after a new history.
  rec = ns["rec"]
  assert ns["items"].shape == (3, 5) and ns["new_items"].shape == (1, 5)
  for j, u in enumerate((1, 2, 3)):
    assert f"user {u}: {' '.join(map(str, ns['items'][j]))}" in out
    row = int(np.flatnonzero(rec.users.user_ids == u)[0])
    seen = rec.users.items[rec.users.indptr[row]:rec.users.indptr[row + 1]]
    assert not set(ns["items"][j].tolist()) & set(seen.tolist())
  assert not {50, 172, 133} & set(ns["new_items"][0].tolist())
  assert "after 50 172 133: " in out
  # The plot cell's fallback: validation NDCG@10 of epochs 1 and 2.
  assert ns["epochs"] == [1, 2]
  assert "matplotlib is not installed" in out
  for e, v in zip(ns["epochs"], ns["ndcg10"]):
    assert f"| {e} | {v:.4f} |" in out


def test_plot_cell_with_matplotlib(executed, monkeypatch):
  """The matplotlib branch, against a stub that records the calls."""
  ns, _, cells = executed
  calls = []

  class Recorder:
    def __getattr__(self, name):
      return lambda *a, **k: calls.append((name, a, k))

  pyplot = types.ModuleType("matplotlib.pyplot")
  pyplot.subplots = lambda **k: (Recorder(), Recorder())
  pyplot.show = lambda: calls.append(("show", (), {}))
  matplotlib = types.ModuleType("matplotlib")
  matplotlib.pyplot = pyplot
  monkeypatch.setitem(sys.modules, "matplotlib", matplotlib)
  monkeypatch.setitem(sys.modules, "matplotlib.pyplot", pyplot)
  with contextlib.redirect_stdout(io.StringIO()) as out:
    run_cells(cells[-1:], dict(ns))
  assert "matplotlib is not installed" not in out.getvalue()
  names = [c[0] for c in calls]
  assert names[0] == "plot" and names[-1] == "show"
  assert calls[0][1] == (ns["epochs"], ns["ndcg10"])
  (save,) = [c for c in calls if c[0] == "savefig"]
  assert save[1][0] == os.path.join(ns["WORKDIR"], "valid_ndcg10.png")
