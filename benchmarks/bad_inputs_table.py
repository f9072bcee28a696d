"""Prints a Markdown table of bad interaction files and what data.py says.

    python benchmarks/bad_inputs_table.py

Its output is the "Cases" table of docs/bad_inputs.md.
Each case is written to a temp file and read with `data.read_interactions`
(format 'auto', the default, unless the case says otherwise). The table shows
the exception type and its exact message (the temp folder is shown as
`<tmp>`), or what was parsed when the file is accepted. A case that raises
anything but `data.DataError` is marked **NOT DataError**.
"""

import gzip
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable-next=g-import-not-at-top,wrong-import-position
from diff4rec_jax import data

_GOOD = b"1 10\n1 11\n1 12\n2 10\n2 13\n2 14\n"

# (name, file name, bytes, read_interactions kwargs)
CASES = [
    ("valid pair file (reference)", "ok.txt", _GOOD, {}),
    ("malformed line: one field", "one_field.txt",
     b"1 10\n1 11\n1\n1 12\n2 10\n2 13\n2 14\n", {}),
    ("malformed line: letters in an id", "letters.txt",
     b"1 10\n1 x11\n1 12\n", {}),
    ("malformed line: three fields among pairs (auto format)",
     "three_fields.txt", b"1 10\n1 11 12\n1 13\n2 10\n2 13\n2 14\n", {}),
    ("malformed line: three fields, format='pair'", "three_fields_pair.txt",
     b"1 10\n1 11 12\n1 13\n2 10\n2 13\n2 14\n", {"fmt": "pair"}),
    ("wrong separator: commas", "commas.txt", b"1,10\n1,11\n1,12\n", {}),
    ("wrong separator: '::' (raw ML-1M ratings.dat)", "ratings.dat",
     b"1::1193::5::978300760\n1::661::3::978302109\n", {}),
    ("wrong separator: tabs", "tabs.txt",
     _GOOD.replace(b" ", b"\t"), {}),
    ("raw ML-100K u.data (4 tab-separated fields)", "u.data",
     b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
     b"22\t377\t1\t878887116\n", {}),
    ("raw Amazon ratings CSV", "ratings_Beauty.csv",
     b"A39HTATAQ9V7YF,0205616461,5.0,1369699200\n", {}),
    ("user id zero", "user_zero.txt", b"0 10\n0 11\n0 12\n", {}),
    ("item id zero", "item_zero.txt", b"1 10\n1 0\n1 12\n", {}),
    ("negative id", "negative.txt", b"1 10\n1 -11\n1 12\n", {}),
    ("decimal id", "decimal.txt", b"1 10\n1 11.0\n1 12\n", {}),
    ("id out of range (10^10)", "too_big.txt",
     b"1 10\n1 10000000000\n1 12\n", {}),
    ("id 10^9 - 1 (largest accepted)", "max_id.txt",
     b"1 999999999\n1 11\n1 12\n", {}),
    ("id 1 written with leading zeros (0000000001)", "leading_zeros.txt",
     b"1 10\n1 0000000001\n1 12\n", {}),
    ("header line", "header.txt", b"user item\n" + _GOOD, {}),
    ("duplicate header line (two files concatenated)", "dup_header.txt",
     _GOOD + b"user item\n" + _GOOD, {}),
    ("empty file", "empty.txt", b"", {}),
    ("whitespace-only file", "blank.txt", b"\n \n\t\n", {}),
    ("binary garbage", "garbage.bin",
     np.random.default_rng(0).bytes(64), {}),
    ("NUL bytes", "nul.txt", b"1 10\n1 11\x00\n1 12\n", {}),
    ("UTF-8 byte order mark", "bom.txt", b"\xef\xbb\xbf" + _GOOD, {}),
    ("CRLF line ends", "crlf.txt", _GOOD.replace(b"\n", b"\r\n"), {}),
    ("no newline at end of file", "no_eol.txt", _GOOD.rstrip(b"\n"), {}),
    ("truncated gzip", "trunc.txt.gz",
     gzip.compress(_GOOD * 50, mtime=0)[:-40], {}),
    ("gzip magic, then garbage", "bad.txt.gz",
     b"\x1f\x8b" + np.random.default_rng(1).bytes(40), {}),
    ("gzip of garbage text", "garbage_text.txt.gz",
     gzip.compress(b"hello world\n", mtime=0), {}),
    ("user with too few interactions (2 < 3)", "short_user.txt",
     b"1 10\n1 11\n2 10\n2 13\n2 14\n", {}),
    ("user with too few, drop_short=True", "short_user_drop.txt",
     b"1 10\n1 11\n2 10\n2 13\n2 14\n", {"drop_short": True}),
    ("user with 4 interactions (below the paper's 5)", "four.txt",
     b"1 10\n1 11\n1 12\n1 13\n", {}),
    ("users not contiguous (interleaved lines)", "interleaved.txt",
     b"1 10\n2 10\n1 11\n2 13\n1 12\n2 14\n", {}),
    ("format='xml' (bad option)", "ok2.txt", _GOOD, {"fmt": "xml"}),
    ("missing file", "does_not_exist.txt", None, {}),
]


def _describe_ok(ds):
  st = ds.stats()
  return (f"accepted: {st['users']} users, {st['actions']} actions, "
          f"items = {ds.items.tolist()[:8]}")


def _cell(text):
  return text.replace("|", "\\|").replace("\n", " ")


def run_cases(folder):
  """Yields (case, input repr, outcome, message) for every case."""
  for name, fname, content, kwargs in CASES:
    path = os.path.join(folder, fname)
    if content is not None:
      with open(path, "wb") as f:
        f.write(content)
      shown = repr(content[:40]) + ("..." if len(content) > 40 else "")
    else:
      shown = "(no file)"
    try:
      ds = data.read_interactions(path, **kwargs)
      outcome, msg = "ok", _describe_ok(ds)
    except data.DataError as e:
      outcome, msg = "DataError", str(e)
    except Exception as e:  # pylint: disable=broad-except
      outcome, msg = f"**NOT DataError: {type(e).__name__}**", str(e)
    yield name, shown, outcome, msg.replace(folder, "<tmp>")


# (field, bad value) checked by config_lib.validate at start.
CONFIG_CASES = [
    ("augment.num_copies", -1), ("augment.ratio", 1.5),
    ("augment.ratio", -0.1), ("augment.pacing", "cubic"),
    ("data.max_len", 1), ("generator.steps", 0),
    ("generator.inference_step", 99), ("model.name", "bert"),
    ("train.loss", "hinge"), ("train.batch_size", 0),
    ("model.dropout", 1.0), ("train.eval_item_chunk", 100),
    ("mode", "magic"),
]


def run_config_cases():
  """Yields (field, value, message) for bad config values."""
  from configs import base  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import config_lib  # pylint: disable=g-import-not-at-top
  for field, value in CONFIG_CASES:
    c = base.get_config()
    node = c
    *parents, leaf = field.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
    try:
      config_lib.validate(c)
      msg = "**accepted**"
    except Exception as e:  # pylint: disable=broad-except
      msg = f"{type(e).__name__}: {e}"
    yield field, value, msg


def run_runtime_cases(folder):
  """Errors raised when a run starts: devices and workdirs."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import config_lib, sharding  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh()
  n = mesh.devices.size
  try:
    sharding.check_batch(n * 8 + 1 if n > 1 else 7, mesh,
                         "config.train.batch_size")
    yield "batch not divisible by devices", "(1 device here: accepted)"
  except ValueError as e:
    yield "batch not divisible by devices", str(e)
  c = tiny.get_config()
  config_lib.check_workdir(c, folder)
  with open(os.path.join(folder, "config.json"), "w") as f:
    import json  # pylint: disable=g-import-not-at-top
    json.dump(c.to_dict(), f)
  c.train.lr = 0.01
  try:
    config_lib.check_workdir(c, folder)
    yield "workdir of a different config", "**accepted**"
  except ValueError as e:
    yield "workdir of a different config", str(e).replace(folder, "<tmp>")


def main():
  folder = tempfile.mkdtemp(prefix="bad_inputs_")
  try:
    print("| case | input (first bytes) | result | message |")
    print("|---|---|---|---|")
    for name, shown, outcome, msg in run_cases(folder):
      print(f"| {_cell(name)} | `{_cell(shown)}` | {outcome} | "
            f"{_cell(msg)} |")
    print()
    print("| config field | bad value | message (at start, before any work) |")
    print("|---|---|---|")
    for field, value, msg in run_config_cases():
      print(f"| `{field}` | `{value!r}` | {_cell(msg)} |")
    print()
    print("| run-time case | message |")
    print("|---|---|")
    for name, msg in run_runtime_cases(folder):
      print(f"| {name} | {_cell(msg)} |")
  finally:
    for f in os.listdir(folder):
      os.unlink(os.path.join(folder, f))
    os.rmdir(folder)


if __name__ == "__main__":
  main()
