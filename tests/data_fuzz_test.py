"""Property tests: the readers either parse or raise data.DataError.

Three generators feed `interactions.parse_interactions` /
`data.read_interactions`: random bytes, random mutations of valid pair-format
text, and damaged gzip files on disk. Any exception other than DataError
fails the test. Runs are derandomized with a fixed `max_examples` (1,000
examples per test, 8,000 reader inputs in all), so CI time is bounded (about
10 s of CPU) and every run tries the same inputs. Each test prints how many inputs it tried (run pytest
with -s to see it; docs/bad_inputs.md records the count and the command).
"""

import gzip
import os
import sys
import tempfile

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np

from diff4rec_jax import data
from diff4rec_jax import interactions

# Hypothesis examples per test. Each example feeds the reader several inputs
# (every `fmt`, or two damaged files), which is cheaper than more examples:
# hypothesis' own overhead (~3 ms an example) dominates the parse (~0.2 ms).
MAX_EXAMPLES = 1000
FMTS = ("auto", "pair", "per_user")

SETTINGS = settings(max_examples=MAX_EXAMPLES, derandomize=True,
                    deadline=None, database=None, print_blob=True,
                    suppress_health_check=list(HealthCheck))

# Bytes that matter to the parser, weighted toward the interesting ones.
INTERESTING = b"0123456789 \t\r\n-,:.+ae\x00\xff\x0b\x1f\x8b"

# Maps every byte value onto INTERESTING, so one cheap binary draw gives text
# made of the characters the parser cares about.
_TO_INTERESTING = bytes(INTERESTING[b % len(INTERESTING)] for b in range(256))
RAW_BYTES = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda b: b.translate(_TO_INTERESTING)))


def _check(users, items, fmt):
  """What a successful parse promises."""
  assert fmt in ("pair", "per_user")
  assert users.dtype == np.int64 and items.dtype == np.int64
  assert users.shape == items.shape and users.size > 0
  assert (users > 0).all() and (items > 0).all()
  assert users.max() <= interactions.MAX_ID
  assert items.max() <= interactions.MAX_ID


def _parse_or_data_error(raw, fmt):
  try:
    users, items, got = interactions.parse_interactions(raw, "<fuzz>", fmt)
  except data.DataError:
    return None
  _check(users, items, got)
  try:
    data.from_interactions(users, items, name="fuzz", source="<fuzz>")
  except data.DataError:
    pass
  return users, items


def _report(name, n):
  sys.stderr.write(f"\n[data_fuzz] {name}: {n} inputs tried\n")


def _valid_text(pairs):
  return "".join(f"{u} {i}\n" for u, i in pairs).encode()


def _to_pairs(blob):
  """4 bytes -> one id in 1..10^9-1 with 1 to 9 digits; ids paired up."""
  w = np.frombuffer(blob[:len(blob) // 8 * 8], dtype="<u4").astype(np.int64)
  ids = (w >> 4) % 10**(1 + (w & 7)) + 1
  return list(zip(ids[0::2].tolist(), ids[1::2].tolist()))


# One binary draw per input keeps hypothesis' overhead per example low.
PAIRS = st.binary(min_size=8, max_size=128).map(_to_pairs)


def test_random_bytes_parse_or_data_error(record_property):
  tried = [0]

  @SETTINGS
  @given(raw=RAW_BYTES)
  def prop(raw):
    for fmt in FMTS:
      tried[0] += 1
      _parse_or_data_error(raw, fmt)

  prop()
  record_property("inputs_tried", tried[0])
  _report("random bytes", tried[0])
  assert tried[0] >= 2 * MAX_EXAMPLES


MUTATIONS = st.lists(
    st.tuples(st.sampled_from(["ins", "set", "del", "dup", "cut"]),
              st.integers(0, 10**6), st.sampled_from(list(INTERESTING)),
              st.integers(1, 20)), max_size=4)


def _mutate(raw, mutations):
  """Applies (op, position, byte, width) edits; positions wrap around."""
  raw = bytearray(raw)
  for op, pos, byte, width in mutations:
    pos = pos % max(1, len(raw))
    if op == "ins":
      raw[pos:pos] = bytes([byte])
    elif op == "set" and raw:
      raw[pos] = byte
    elif op == "del" and raw:
      del raw[pos]
    elif op == "dup":  # repeat a slice, e.g. a duplicated line
      raw[pos:pos] = raw[pos:pos + width]
    elif op == "cut":
      del raw[pos:]
  return bytes(raw)


def test_mutated_pair_text_parse_or_data_error(record_property):
  tried = [0]

  @SETTINGS
  @given(pairs=PAIRS, mutations=MUTATIONS)
  def prop(pairs, mutations):
    raw = _valid_text(pairs)
    for fmt in FMTS:
      tried[0] += 1
      if mutations:
        _parse_or_data_error(_mutate(raw, mutations), fmt)
      else:  # unmutated text must parse to exactly the pairs
        got = _parse_or_data_error(raw, fmt)
        assert got is not None
        assert got[0].tolist() == [u for u, _ in pairs]
        assert got[1].tolist() == [i for _, i in pairs]

  prop()
  record_property("inputs_tried", tried[0])
  _report("mutated pair text", tried[0])
  assert tried[0] >= 2 * MAX_EXAMPLES


def test_damaged_gzip_file_read_or_data_error(record_property):
  tried = [0]
  # A RAM-backed folder where there is one: 2000 file writes on a slow disk
  # would dominate the test's time.
  shm = "/dev/shm"
  folder = tempfile.mkdtemp(
      prefix="diff4rec_fuzz_",
      dir=shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None)
  path = os.path.join(folder, "d.txt.gz")

  @SETTINGS
  @given(pairs=PAIRS, how=st.sampled_from(["truncate", "flip", "append"]),
         pos=st.integers(0, 10**6), bit=st.integers(0, 7),
         tail=st.binary(min_size=1, max_size=20))
  def prop(pairs, how, pos, bit, tail):
    good = gzip.compress(_valid_text(pairs), mtime=0)
    blob = bytearray(good)
    if how == "truncate":
      del blob[pos % len(blob):]
    elif how == "flip":  # any byte after the magic number
      blob[2 + pos % (len(blob) - 2)] ^= 1 << bit
    else:
      blob += tail
    # The drawn damage, and always a truncation too (the common real case).
    for variant in (bytes(blob), good[:2 + pos % (len(good) - 2)]):
      tried[0] += 1
      with open(path, "wb") as f:
        f.write(variant)
      try:
        data.read_interactions(path, name="fuzz")
      except data.DataError:
        pass

  try:
    prop()
  finally:
    if os.path.exists(path):
      os.unlink(path)
    os.rmdir(folder)
  record_property("inputs_tried", tried[0])
  _report("damaged gzip files", tried[0])
  assert tried[0] >= 2 * MAX_EXAMPLES
