"""Prints a Markdown table of bad interaction files and what data.py says.

    python benchmarks/bad_inputs_table.py

Its output is the "Cases" table of docs/bad_inputs.md.
Each case is written to a temp file and read with `data.read_interactions`
(format 'auto', the default, unless the case says otherwise). The table shows
the exception type and its exact message (the temp folder is shown as
`<tmp>`), or what was parsed when the file is accepted. A case that raises
anything but `data.DataError` is marked **NOT DataError**.
"""

import contextlib
import gzip
import json
import logging
import os
import resource
import signal
import socket
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable-next=g-import-not-at-top,wrong-import-position
from diff4rec_jax import data

_GOOD = b"1 10\n1 11\n1 12\n2 10\n2 13\n2 14\n"
# 300 users x 8 pairs over 50 items: big enough for the shape checks.
_MANY = "".join(f"{u} {(u * 7 + k) % 50 + 1}\n" for u in range(1, 301)
                for k in range(8)).encode()
_MANY_LINES = _MANY.splitlines(keepends=True)

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
    ("CR-only line ends (classic Mac)", "cr.txt",
     _GOOD.replace(b"\n", b"\r"), {}),
    ("no line breaks (2,400 pairs on one line)", "one_line.txt",
     _MANY.replace(b"\n", b" "), {}),
    ("three fields at line 2,000 of a pair file (auto format)",
     "deep_bad.txt", b"".join(_MANY_LINES[:1999] + [b"5 6 7\n"] +
                              _MANY_LINES[2000:]), {}),
    ("item id 150,000 among 51 distinct items", "sparse.txt",
     _MANY + b"300 150000\n", {}),
    ("every user under 3, drop_short=True", "all_short.txt",
     b"1 10\n1 11\n2 10\n", {"drop_short": True}),
]


def _describe_ok(ds):
  st = ds.stats()
  return (f"accepted: {st['users']} users, {st['actions']} actions, "
          f"items = {ds.items.tolist()[:8]}")


def _cell(text):
  return text.replace("|", "\\|").replace("\n", " ")


class _Warnings(logging.Handler):
  """Collects the warnings logged during a case."""

  def __init__(self):
    super().__init__(logging.WARNING)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


@contextlib.contextmanager
def _warnings():
  h = _Warnings()
  root = logging.getLogger()
  old = root.level
  root.addHandler(h)
  root.setLevel(logging.WARNING)
  try:
    yield h.messages
  finally:
    root.removeHandler(h)
    root.setLevel(old)


def _clean(text, folder):
  """Message with the temp folder, pid, host and times made stable."""
  import re  # pylint: disable=g-import-not-at-top
  text = text.replace(folder, "<tmp>").replace(socket.gethostname(), "<host>")
  text = re.sub(r"process \d+", "process <pid>", text)
  text = re.sub(r"/d/[0-9a-f]{32}", "/d/<file>", text)
  return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+", "<time>", text)


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
      with _warnings() as warned:
        ds = data.read_interactions(path, **kwargs)
      outcome, msg = "ok", _describe_ok(ds)
      if warned:
        outcome, msg = "ok, warning", f"{msg}; warning: {' '.join(warned)}"
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
    # (field, value, other settings)
    ("model.caser_window", 60, {"model.name": "caser", "data.max_len": 50}),
]


def run_config_cases():
  """Yields (field, value, message) for bad config values."""
  from configs import base  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import config_lib  # pylint: disable=g-import-not-at-top
  for field, value, *others in CONFIG_CASES:
    c = base.get_config()
    for f, v in [(field, value)] + list(others[0].items() if others else []):
      node = c
      *parents, leaf = f.split(".")
      for p in parents:
        node = node[p]
      node[leaf] = v
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
  yield "unknown override `--config.train.nonexistent=1`", str(
      config_lib.unknown_field_error(c, "train.nonexistent"))
  yield "override with a typo `--config.train.batchsize=64`", str(
      config_lib.unknown_field_error(c, "train.batchsize"))
  yield from _data_runtime_cases(folder)
  yield from _lock_cases(folder)
  yield from _checkpoint_cases(folder)


def _outcome(fn, folder):
  """'message' of the error `fn` raises, or 'accepted; warning: ...'."""
  try:
    with _warnings() as warned:
      fn()
  except Exception as e:  # pylint: disable=broad-except
    return _clean(f"{type(e).__name__}: {e}", folder)
  return _clean("accepted" + ("; warning: " + " / ".join(warned)
                              if warned else ""), folder)


def _data_runtime_cases(folder):
  """Data checks of a run's start (data.load, rundir.check_data)."""
  from diff4rec_jax import rundir  # pylint: disable=g-import-not-at-top
  three = os.path.join(folder, "three_each.txt")
  with open(three, "wb") as f:
    f.write(b"".join(f"{u} {i}\n".encode() for u in (1, 2, 3)
                     for i in (1, 2, 3)))
  yield "every user has exactly 3 interactions (0 training steps)", _outcome(
      lambda: data.check_trainable(data.read_interactions(three)), folder)
  wd = os.path.join(folder, "wd_data")
  os.makedirs(wd)
  a, b = os.path.join(folder, "a.txt"), os.path.join(folder, "b.txt.gz")
  with open(a, "wb") as f:
    f.write(_MANY)
  with open(b, "wb") as f:
    f.write(gzip.compress(_MANY, mtime=0))
  rundir.check_data(wd, data.read_interactions(a))
  yield "resume with the same data moved and gzipped", _outcome(
      lambda: rundir.check_data(wd, data.read_interactions(b)), folder)
  with open(b, "wb") as f:
    f.write(_MANY + b"1 2\n")
  yield "resume with other data", _outcome(
      lambda: rundir.check_data(wd, data.read_interactions(b)), folder)


def _lock_cases(folder):
  from diff4rec_jax import rundir  # pylint: disable=g-import-not-at-top
  wd = os.path.join(folder, "wd_lock")
  os.makedirs(wd)
  lock = os.path.join(wd, rundir.LOCK_FILE)
  with open(lock, "w") as f:   # pid 1 (init) is always alive
    json.dump({"pid": 1, "host": socket.gethostname(),
               "started": "2026-01-01 00:00:00 UTC"}, f)
  yield "second process on a running workdir", _outcome(
      lambda: rundir.release(rundir.acquire(wd)), folder)
  dead = 2**22 + 12345        # above the usual pid_max: no such process
  with open(lock, "w") as f:
    json.dump({"pid": dead, "host": socket.gethostname(),
               "started": "2026-01-01 00:00:00 UTC"}, f)
  yield "stale lock (its process was killed)", _outcome(
      lambda: rundir.release(rundir.acquire(wd)), folder)
  with open(lock, "w") as f:
    json.dump({"pid": 1, "host": "other-host",
               "started": "2026-01-01 00:00:00 UTC"}, f)
  yield "lock held from another host", _outcome(
      lambda: rundir.release(rundir.acquire(wd)), folder).replace(
          "process 1 ", "process <pid> ")


def _checkpoint_cases(folder):
  """Damaged checkpoints, a full disk and a cut metrics line."""
  import glob  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top,reimported
  from diff4rec_jax import checkpointing  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import runlog

  def state(k):
    w = np.random.default_rng(0).normal(size=(64, 100)).astype(np.float32)
    w[0, 0] = k
    return {"w": w}

  def biggest(d):
    return max(glob.glob(os.path.join(d, "**", "d", "*"), recursive=True),
               key=os.path.getsize)

  def fresh(name):
    d = os.path.join(folder, name)
    ck = checkpointing.Checkpointer(d)
    for k in (1, 2):
      ck.save_best(k, state(k), {"epoch": k})
      ck.save(k, state(k), {"epoch": k})
    ck.close()
    return d

  def restore(d, best=False):
    ck = checkpointing.Checkpointer(d)
    try:
      _, meta = (ck.restore_best if best else ck.restore)(state(0))
    finally:
      ck.close()
    logging.warning("-> restored epoch %d", meta["epoch"])

  d = fresh("ck_flip")
  f = biggest(os.path.join(d, "latest", "2"))
  raw = bytearray(open(f, "rb").read())
  raw[len(raw) // 2] ^= 0x10
  open(f, "wb").write(raw)
  yield "checkpoint with one flipped byte (Orbax alone loads it)", _outcome(
      lambda: restore(d), folder)
  d = fresh("ck_trunc")
  f = biggest(os.path.join(d, "best", "2"))
  open(f, "r+b").truncate(os.path.getsize(f) // 2)
  yield "best checkpoint with a truncated data file", _outcome(
      lambda: restore(d, best=True), folder)
  d = fresh("ck_old")
  os.unlink(os.path.join(d, "latest", "2", checkpointing.MANIFEST))
  f = biggest(os.path.join(d, "latest", "2"))
  open(f, "r+b").truncate(os.path.getsize(f) // 2)
  yield "truncated checkpoint without manifest (older code)", _outcome(
      lambda: restore(d), folder)
  d = fresh("ck_full")

  def save_on_full_disk():
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    ck = checkpointing.Checkpointer(d)
    try:
      ck.save(3, state(3), {"epoch": 3})
    finally:
      resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
      signal.signal(signal.SIGXFSZ, old)
      ck.close()

  yield ("disk full during a save (a 4 KB file-size limit)",
         _outcome(save_on_full_disk, folder))
  yield "the rerun after the full disk", _outcome(lambda: restore(d), folder)
  m = os.path.join(folder, "metrics.jsonl")
  with open(m, "w") as f:
    f.write('{"epoch": 1}\n{"epoch": 2}\n{"epo')
  yield "metrics.jsonl with a cut last line (killed mid-write)", _outcome(
      lambda: runlog.RunLog(folder, 2).close(), folder)


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
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(folder)


if __name__ == "__main__":
  main()
