"""Tests for datasets/: raw formats, preprocessing, atomic writes, download.

prepare.py (registry, ensure_dataset, CLI), raw.py, writers.py, download.py.

Every file is written under pytest's tmp_path; the downloader talks only to
an http.server on 127.0.0.1 started by the test.
"""

import gzip
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

from diff4rec_jax import data
from diff4rec_jax.datasets import download as download_lib
from diff4rec_jax.datasets import prepare
from diff4rec_jax.datasets import raw as raw_lib
from diff4rec_jax.datasets import writers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _shared_data_dir():
  """$DIFF4REC_DATA_DIR, else <repo>/../shared/data, if it has ML-100K."""
  for d in (os.environ.get(data.DATA_DIR_ENV),
            os.path.join(REPO, "..", "shared", "data")):
    if d and os.path.isfile(os.path.join(d, "raw", "ml-100k", "u.data")):
      return d
  return None


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
  # The local server must be reached directly, never through a proxy.
  for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
              "all_proxy", "ALL_PROXY"):
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


# ---------------------------------------------------------------------------
# ML-100K: the real raw file gives the staged pair file byte for byte.
# ---------------------------------------------------------------------------
def test_ml100k_raw_matches_staged_file_exactly(tmp_path):
  d = _shared_data_dir()
  if d is None:
    pytest.skip("shared data not found: set $DIFF4REC_DATA_DIR or provide "
                "<repo>/../shared/data with raw/ml-100k/u.data")
  out = tmp_path / "ml-100k.txt"
  stats_path = tmp_path / "ml-100k.stats.json"
  stats = prepare.prepare_file(os.path.join(d, "raw", "ml-100k", "u.data"),
                               "movielens_tab", str(out), str(stats_path))
  with open(os.path.join(d, "ml-100k.txt"), "rb") as f:
    want = f.read()
  assert out.read_bytes() == want
  assert stats["users"] == 943 and stats["items"] == 1682
  assert stats["actions"] == 100_000 and stats["removed_users"] == 0
  assert json.loads(stats_path.read_text())["sparsity"] == pytest.approx(
      0.936953)


# ---------------------------------------------------------------------------
# One scenario rendered in every raw format.
# ---------------------------------------------------------------------------
# (user, item, t) in file order. bob has 4 actions (removed by the 5-minimum)
# and is the only one with item 700 (so the item disappears too). Ties in t:
# alice 100/200 at 20, carol 300/200 at 50, dave 600/500 at 7.
ROWS = [
    ("carol", 300, 50), ("alice", 100, 20), ("bob", 700, 5),
    ("carol", 100, 10), ("dave", 600, 7), ("alice", 200, 20),
    ("carol", 200, 50), ("bob", 100, 1), ("alice", 300, 5),
    ("dave", 500, 7), ("carol", 400, 60), ("alice", 400, 30),
    ("bob", 200, 2), ("dave", 100, 1), ("carol", 500, 5),
    ("alice", 500, 40), ("bob", 300, 3), ("dave", 200, 9),
    ("carol", 600, 70), ("dave", 300, 8),
]
NUM_UID = {"alice": 10, "bob": 20, "carol": 30, "dave": 40}
# Worked out by hand: users alice=1, carol=2, dave=3 (sorted raw ids, bob
# gone); items 100..600 -> 1..6; each user by time, ties in file order.
EXPECTED = {1: [3, 1, 2, 4, 5], 2: [5, 1, 3, 2, 4, 6], 3: [1, 6, 5, 3, 2]}
EXPECTED_TEXT = "".join(f"{u} {i}\n" for u in EXPECTED for i in EXPECTED[u])

UNIX0 = 1_369_699_200  # 2013-05-28


def _date(t, with_time):
  day = np.datetime64("2017-01-01") + np.timedelta64(t, "D")
  return f"{day} 12:34:56" if with_time else str(day)


def _render(fmt):
  """The scenario as a raw file's text in format `fmt`."""
  lines = []
  for n, (u, i, t) in enumerate(ROWS):
    if fmt == "movielens_tab":
      lines.append(f"{NUM_UID[u]}\t{i}\t{1 + n % 5}\t{UNIX0 + t}")
    elif fmt == "movielens_dat":
      lines.append(f"{NUM_UID[u]}::{i}::{1 + n % 5}::{UNIX0 + t}")
    elif fmt == "amazon_csv":
      lines.append(f"{u},i{i},{1 + n % 5}.0,{UNIX0 + t}")
    elif fmt == "amazon_json":
      lines.append(json.dumps({
          "reviewerID": u, "asin": f"i{i}", "reviewerName": "X, \"Y\"",
          "helpful": [0, 0], "reviewText": "ok", "overall": 5.0,
          "summary": "s", "unixReviewTime": UNIX0 + t,
          "reviewTime": "05 28, 2013"}))
    elif fmt == "steam":
      lines.append(
          f"{{u'username': u'{u}', u'hours': 0.{n}, u'products': 3, "
          f"u'product_id': u'i{i}', u'page_order': {n}, "
          f"u'date': u'{_date(t, False)}', u'text': u\"it's {{fine}}\", "
          f"u'early_access': False, u'page': 1}}")
    elif fmt == "yelp":
      lines.append(json.dumps({
          "review_id": f"r{n}", "user_id": u, "business_id": f"i{i}",
          "stars": 4.0, "useful": 0, "text": "Good.\nreally",
          "date": _date(t, True)}))
  return "\n".join(lines) + "\n"


ALL_FORMATS = ["movielens_tab", "movielens_dat", "amazon_csv", "amazon_json",
               "steam", "yelp"]


def _write_raw(tmp_path, fmt):
  text = _render(fmt).encode()
  if fmt == "steam":  # the SASRec file is gzipped
    path = tmp_path / "steam_reviews.json.gz"
    path.write_bytes(gzip.compress(text))
  else:
    path = tmp_path / f"raw.{fmt}"
    path.write_bytes(text)
  return str(path)


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_raw_format_end_to_end(tmp_path, fmt):
  raw = _write_raw(tmp_path, fmt)
  out = tmp_path / "out" / "d.txt.gz"
  stats_p = tmp_path / "out" / "d.stats.json"
  umap = tmp_path / "out" / "u.tsv"
  imap = tmp_path / "out" / "i.tsv"
  prepare.prepare_file(raw, fmt, str(out), str(stats_p),
                       user_map_path=str(umap), item_map_path=str(imap))
  # k-core filter, remapping, time order, ties in file order.
  assert gzip.decompress(out.read_bytes()).decode() == EXPECTED_TEXT
  stats = json.loads(stats_p.read_text())
  assert {k: stats[k] for k in ("users", "items", "actions", "min_len",
                                "max_len", "removed_users", "removed_items",
                                "removed_rows", "raw_rows")} == {
                                    "users": 3, "items": 6, "actions": 16,
                                    "min_len": 5, "max_len": 6,
                                    "removed_users": 1, "removed_items": 1,
                                    "removed_rows": 4, "raw_rows": 20}
  assert stats["avg_len"] == 5.33
  assert stats["sparsity"] == round(1 - 16 / 18, 6)
  numeric = fmt.startswith("movielens")
  want_users = ["10", "30", "40"] if numeric else ["alice", "carol", "dave"]
  want_items = [f"{'' if numeric else 'i'}{k}00" for k in range(1, 7)]
  assert umap.read_text().splitlines()[1:] == [
      f"{n}\t{r}" for n, r in enumerate(want_users, 1)]
  assert imap.read_text().splitlines()[1:] == [
      f"{n}\t{r}" for n, r in enumerate(want_items, 1)]
  # The project's reader accepts the output and agrees on the statistics.
  ds = data.read_interactions(str(out))
  assert ds.stats()["users"] == 3 and ds.stats()["actions"] == 16
  assert not [f for f in os.listdir(out.parent) if f.endswith(".tmp")]


def test_min_user_actions_flag_keeps_short_user(tmp_path):
  raw = _write_raw(tmp_path, "movielens_dat")
  out = tmp_path / "d.txt"
  stats = prepare.prepare_file(raw, "movielens_dat", str(out),
                               min_user_actions=4)
  assert stats["users"] == 4 and stats["items"] == 7
  assert stats["actions"] == 20
  # bob (raw 20) is now user 2; his rows ordered by time: 100, 200, 300, 700.
  bob = [line for line in out.read_text().splitlines() if line[0] == "2"]
  assert bob == ["2 1", "2 2", "2 3", "2 7"]


def test_kcore_iterates_to_fixed_point():
  # Rows (user: items): 1: 9 5 6 | 2: 5 6 7 | 3: 6 7 8 | 4: 6 7 8 | 0: 9 5
  users = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 0, 0])
  items = np.array([9, 5, 6, 5, 6, 7, 6, 7, 8, 6, 7, 8, 9, 5])
  # min_user=3, min_item=2. Pass 1: every item has >= 2 rows; user 0 has 2
  # rows and goes. Pass 2: item 9 is left with 1 row and goes, so user 1
  # has 2 rows and goes. Pass 3: item 5 is left with 1 row (user 2) and
  # goes, so user 2 goes. Pass 4: items 6, 7, 8 have 2 rows each, users 3
  # and 4 have 3 each: fixed point.
  keep = raw_lib.kcore_mask(users, items, min_user=3, min_item=2)
  assert keep.tolist() == [False] * 6 + [True] * 6 + [False] * 2
  # A single user pass (min_item=0) drops user 0 only.
  keep = raw_lib.kcore_mask(users, items, min_user=3, min_item=0)
  assert keep.tolist() == [True] * 12 + [False] * 2
  # min_item=3 unravels everything (items 6..8 end with 2 rows).
  assert not raw_lib.kcore_mask(users, items, min_user=3, min_item=3).any()


def test_since_drops_old_rows(tmp_path):
  raw = _write_raw(tmp_path, "yelp")
  out = tmp_path / "y.txt"
  # Day t is 2017-01-01 + t. Keeping t >= 5 drops 4 rows (bob t=1,2,3,
  # dave t=1): alice keeps 5, carol 6, dave 4 and bob 1 -> 2 users remain.
  stats = prepare.prepare_file(raw, "yelp", str(out), since="2017-01-06")
  assert stats["rows_before_since"] == 4
  assert stats["users"] == 2


def test_header_row_in_amazon_csv_is_skipped(tmp_path):
  p = tmp_path / "r.csv"
  p.write_text("user,item,rating,timestamp\n" + _render("amazon_csv"))
  out = tmp_path / "o.txt"
  prepare.prepare_file(str(p), "amazon_csv", str(out))
  assert out.read_text() == EXPECTED_TEXT


@pytest.mark.parametrize("fmt,text,needle", [
    ("movielens_dat", "1::2::3::4\n1::2::3\n", "raw:2: expected 4 fields"),
    ("movielens_dat", "1::2::3::4\n1,2,3,4\n", "raw:2: expected 4 fields"),
    ("movielens_tab", "1\t2\t3\t4\nx\t2\t3\t4\n",
     "raw:2: user/item ids must be integers"),
    ("movielens_tab", "1\t2\t3\tnoon\n", "raw:1: timestamp 'noon'"),
    ("amazon_csv", "a,b,5.0,1\na,b,5.0,soon\n", "raw:2: timestamp 'soon'"),
    ("amazon_json", '{"reviewerID": "a", "asin": "b"}\n',
     "raw:1: missing field(s) ['unixReviewTime']"),
    ("steam", "{u'username': u'a', u'product_id': u'b', u'date': u'x'}\n",
     "raw:1: field 'date' is 'x'"),
    ("steam", "{u'username': u'a', \n", "raw:1: not a JSON or Python-literal"),
    ("yelp", '{"user_id": "a", "business_id": "b", "date": "2019-01-01"}\n'
     "{'user_id': 'a'}\n", "raw:2: not a JSON object"),
    ("yelp", "\n\n", "no interactions found"),
])
def test_raw_errors_name_file_and_line(tmp_path, fmt, text, needle):
  p = tmp_path / "raw"
  p.write_text(text)
  out = tmp_path / "o.txt"
  with pytest.raises(data.DataError) as e:
    prepare.prepare_file(str(p), fmt, str(out))
  assert needle in str(e.value)
  assert os.listdir(tmp_path) == ["raw"]  # nothing half-written


def test_truncated_gzip_raw_is_a_data_error(tmp_path):
  p = tmp_path / "s.json.gz"
  p.write_bytes(gzip.compress(_render("steam").encode())[:-30])
  with pytest.raises(data.DataError, match="corrupt or truncated"):
    raw_lib.parse_raw(str(p), "steam")


def test_corrupt_zip_member_is_a_data_error(tmp_path):
  p = tmp_path / "ml-1m.zip"
  with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z:
    z.writestr("ml-1m/ratings.dat", _render("movielens_dat") * 50)
  blob = bytearray(p.read_bytes())
  blob[100] ^= 0xFF  # inside the compressed member
  p.write_bytes(bytes(blob))
  with pytest.raises(data.DataError, match="corrupt or truncated"):
    raw_lib.parse_raw(str(p), "movielens_dat", member="ml-1m/ratings.dat")


def test_zip_without_the_member(tmp_path):
  p = tmp_path / "ml-1m.zip"
  with zipfile.ZipFile(p, "w") as z:
    z.writestr("ml-1m/movies.dat", "1::Toy Story::Animation\n")
  with pytest.raises(data.DataError, match="no member 'ml-1m/ratings.dat'"):
    raw_lib.parse_raw(str(p), "movielens_dat", member="ml-1m/ratings.dat")


def test_everything_below_minimum_is_an_error(tmp_path):
  p = tmp_path / "r.dat"
  p.write_text("1::2::3::4\n1::3::3::5\n")
  with pytest.raises(data.DataError, match="no user has 5 or more"):
    prepare.prepare_file(str(p), "movielens_dat", str(tmp_path / "o.txt"))


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------
def test_format_pairs_matches_naive_formatting():
  rng = np.random.default_rng(0)
  u = rng.integers(1, 10**9, size=500)
  i = rng.integers(1, 10**6, size=500)
  u[:3] = [1, 9, 10]
  i[:3] = [10, 99, 100]
  want = "".join(f"{a} {b}\n" for a, b in zip(u, i)).encode()
  assert writers.format_pairs(u, i) == want
  assert writers.format_pairs(np.zeros(0, int), np.zeros(0, int)) == b""


def test_atomic_open_leaves_no_temp_file_on_error(tmp_path):
  target = tmp_path / "f.txt"
  with pytest.raises(RuntimeError):
    with writers.atomic_open(str(target)) as f:
      f.write(b"half")
      raise RuntimeError("boom")
  assert os.listdir(tmp_path) == []
  target.write_bytes(b"old")
  with pytest.raises(RuntimeError):
    with writers.atomic_open(str(target)) as f:
      f.write(b"new")
      raise RuntimeError("boom")
  assert os.listdir(tmp_path) == ["f.txt"]
  assert target.read_bytes() == b"old"
  with writers.atomic_open(str(target)) as f:
    f.write(b"new")
  assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["f.txt"]


def test_write_pairs_bad_ids_leave_nothing(tmp_path):
  with pytest.raises(ValueError):
    writers.write_pairs(str(tmp_path / "x.txt.gz"), np.array([1, 0]),
                        np.array([1, 2]))
  assert os.listdir(tmp_path) == []


def test_gzip_output_is_deterministic(tmp_path):
  a, b = tmp_path / "a.txt.gz", tmp_path / "b.txt.gz"
  writers.write_pairs(str(a), np.array([1, 1, 2]), np.array([3, 4, 5]))
  writers.write_pairs(str(b), np.array([1, 1, 2]), np.array([3, 4, 5]))
  assert a.read_bytes() == b.read_bytes()
  assert gzip.decompress(a.read_bytes()) == b"1 3\n1 4\n2 5\n"


# ---------------------------------------------------------------------------
# Download, against a local server on 127.0.0.1
# ---------------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
  """Serves files from cfg['root']; Range and truncation are switchable."""

  def do_GET(self):  # pylint: disable=invalid-name
    cfg = self.server.cfg
    rng = self.headers.get("Range")
    cfg["requests"].append((self.path, rng))
    path = os.path.join(cfg["root"], self.path.lstrip("/"))
    if not os.path.isfile(path):
      self.send_error(404, "Not Found")
      return
    with open(path, "rb") as f:
      body = f.read()
    start = 0
    if rng and cfg["range"]:
      start = int(rng.split("=")[1].split("-")[0])
      if start >= len(body):
        self.send_response(416)
        self.send_header("Content-Range", f"bytes */{len(body)}")
        self.send_header("Content-Length", "0")
        self.end_headers()
        return
      self.send_response(206)
      self.send_header("Content-Range",
                       f"bytes {start}-{len(body) - 1}/{len(body)}")
    else:
      self.send_response(200)
    payload = body[start:]
    self.send_header("Content-Length", str(len(payload)))
    self.end_headers()
    if cfg["truncate"] > 0:
      cfg["truncate"] -= 1
      payload = payload[:len(payload) // 2]
    self.wfile.write(payload)

  def log_message(self, *args):
    pass


@pytest.fixture
def server(tmp_path):
  root = tmp_path / "www"
  root.mkdir()
  srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
  srv.cfg = {"root": str(root), "range": True, "truncate": 0,
             "requests": []}
  t = threading.Thread(target=srv.serve_forever, daemon=True)
  t.start()
  yield f"http://127.0.0.1:{srv.server_address[1]}", srv.cfg, root
  srv.shutdown()
  srv.server_close()


PAYLOAD = np.random.default_rng(1).bytes(300_000)
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _dl(url, dest, **kw):
  kw.setdefault("backoff_s", 0.0)
  kw.setdefault("progress", False)
  kw.setdefault("timeout", 10.0)
  return download_lib.download(url, str(dest), **kw)


def test_download_success_with_checksum(server, tmp_path, capsys):
  url, cfg, root = server
  (root / "f.bin").write_bytes(PAYLOAD)
  dest = tmp_path / "dl" / "f.bin"
  assert _dl(f"{url}/f.bin", dest, md5=MD5, sha256=SHA,
             progress=True) == str(dest)
  assert dest.read_bytes() == PAYLOAD
  assert os.listdir(dest.parent) == ["f.bin"]
  assert "f.bin: 0.3 / 0.3 MB (100%)" in capsys.readouterr().err
  # A second call only verifies the existing file: no request.
  n = len(cfg["requests"])
  _dl(f"{url}/f.bin", dest, md5=MD5)
  assert len(cfg["requests"]) == n


def test_download_checksum_mismatch_leaves_nothing(server, tmp_path):
  url, _, root = server
  (root / "f.bin").write_bytes(PAYLOAD)
  dest = tmp_path / "dl" / "f.bin"
  with pytest.raises(data.DataError, match="md5 checksum mismatch") as e:
    _dl(f"{url}/f.bin", dest, md5="0" * 32, checksum_note="test note")
  assert "test note" in str(e.value) and "deleted" in str(e.value)
  assert os.listdir(dest.parent) == []


def test_download_skip_checksum(server, tmp_path):
  url, _, root = server
  (root / "f.bin").write_bytes(PAYLOAD)
  dest = tmp_path / "f.bin"
  _dl(f"{url}/f.bin", dest, md5="0" * 32, skip_checksum=True)
  assert dest.read_bytes() == PAYLOAD


def test_truncated_transfer_errors_then_resumes(server, tmp_path):
  url, cfg, root = server
  (root / "f.bin").write_bytes(PAYLOAD)
  dest = tmp_path / "f.bin"
  cfg["truncate"] = 1
  with pytest.raises(data.DataError, match="interrupted") as e:
    _dl(f"{url}/f.bin", dest, md5=MD5, retries=0)
  assert "Rerun to resume" in str(e.value)
  part = tmp_path / "f.bin.part"
  assert part.read_bytes() == PAYLOAD[:150_000]
  assert not dest.exists()
  _dl(f"{url}/f.bin", dest, md5=MD5, sha256=SHA)
  assert cfg["requests"][-1] == ("/f.bin", "bytes=150000-")
  assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_truncated_transfer_is_retried_within_one_call(server, tmp_path):
  url, cfg, root = server
  (root / "f.bin").write_bytes(PAYLOAD)
  dest = tmp_path / "f.bin"
  cfg["truncate"] = 2
  _dl(f"{url}/f.bin", dest, md5=MD5, retries=2)
  assert dest.read_bytes() == PAYLOAD
  assert [r for _, r in cfg["requests"]] == [None, "bytes=150000-",
                                             "bytes=225000-"]


def test_range_resume_of_existing_part(server, tmp_path):
  url, cfg, root = server
  (root / "f.bin").write_bytes(PAYLOAD)
  dest = tmp_path / "f.bin"
  (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
  _dl(f"{url}/f.bin", dest, sha256=SHA)
  assert cfg["requests"] == [("/f.bin", "bytes=1000-")]
  assert dest.read_bytes() == PAYLOAD


def test_server_without_range_restarts(server, tmp_path):
  url, cfg, root = server
  (root / "f.bin").write_bytes(PAYLOAD)
  cfg["range"] = False
  dest = tmp_path / "f.bin"
  (tmp_path / "f.bin.part").write_bytes(b"garbage" * 100)
  _dl(f"{url}/f.bin", dest, md5=MD5)
  assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_without_body(server, tmp_path):
  url, cfg, root = server
  (root / "f.bin").write_bytes(PAYLOAD)
  dest = tmp_path / "f.bin"
  (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
  _dl(f"{url}/f.bin", dest, md5=MD5)
  assert cfg["requests"] == [("/f.bin", f"bytes={len(PAYLOAD)}-")]
  assert dest.read_bytes() == PAYLOAD


def test_missing_file_404_is_clear(server, tmp_path):
  url, _, _ = server
  dest = tmp_path / "nope.zip"
  with pytest.raises(data.DataError) as e:
    _dl(f"{url}/nope.zip", dest)
  msg = str(e.value)
  assert "HTTP 404" in msg and f"{url}/nope.zip" in msg
  assert f"place it at {dest}" in msg
  assert os.listdir(tmp_path) == ["www"]


def test_offline_message_names_url_and_manual_path(tmp_path):
  s = socket.socket()
  s.bind(("127.0.0.1", 0))
  port = s.getsockname()[1]
  s.close()  # nothing listens there now
  dest = tmp_path / "f.zip"
  with pytest.raises(data.DataError) as e:
    _dl(f"http://127.0.0.1:{port}/f.zip", dest)
  msg = str(e.value)
  assert "cannot connect" in msg and f"127.0.0.1:{port}/f.zip" in msg
  assert f"place it at {dest}" in msg


# ---------------------------------------------------------------------------
# ensure_dataset
# ---------------------------------------------------------------------------
def _ml1m_zip(path):
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("ml-1m/ratings.dat", _render("movielens_dat"))
    z.writestr("ml-1m/README", "test archive")


def test_ensure_dataset_downloads_and_prepares(server, tmp_path):
  url, _, root = server
  _ml1m_zip(root / "ml-1m.zip")
  d = tmp_path / "data"
  path = prepare.ensure_dataset("ml-1m", str(d), url=f"{url}/ml-1m.zip",
                                skip_checksum=True, progress=False)
  assert path == str(d / "ml-1m.txt.gz")
  assert gzip.decompress((d / "ml-1m.txt.gz").read_bytes()).decode() == (
      EXPECTED_TEXT)
  assert (d / "raw" / "ml-1m" / "ml-1m.zip").is_file()
  assert json.loads((d / "ml-1m.stats.json").read_text())["users"] == 3
  assert (d / "ml-1m_item_map.tsv").read_text().startswith(
      "item_id\traw_item_id\n1\t100\n")
  # Present now: returned as is, nothing re-read.
  assert prepare.ensure_dataset("ml-1m", str(d)) == path


def test_ensure_dataset_checks_placed_raw_file(tmp_path):
  d = tmp_path / "data"
  raw = d / "raw" / "ml-1m"
  raw.mkdir(parents=True)
  _ml1m_zip(raw / "ml-1m.zip")  # not the real release: md5 differs
  with pytest.raises(data.DataError, match="md5 checksum mismatch"):
    prepare.ensure_dataset("ml-1m", str(d))
  assert not (d / "ml-1m.txt.gz").exists()
  prepare.ensure_dataset("ml-1m", str(d), skip_checksum=True)
  assert data.read_interactions(str(d / "ml-1m.txt.gz")).num_users == 3


def test_ensure_yelp_explains_manual_download(tmp_path):
  d = tmp_path / "data"
  with pytest.raises(data.DataError) as e:
    prepare.ensure_dataset("yelp", str(d))
  msg = str(e.value)
  want = os.path.abspath(d / "raw" / "yelp" /
                         "yelp_academic_dataset_review.json")
  assert "manual download" in msg and want in msg
  assert "https://www.yelp.com/dataset" in msg
  # Once placed (gzipped is fine), it is preprocessed.
  (d / "raw" / "yelp").mkdir(parents=True)
  (d / "raw" / "yelp" / "yelp_academic_dataset_review.json.gz").write_bytes(
      gzip.compress(_render("yelp").encode()))
  path = prepare.ensure_dataset("yelp", str(d))
  assert gzip.decompress(open(path, "rb").read()).decode() == EXPECTED_TEXT


# The command, under its name and under the old one (the shim
# diff4rec_jax/prepare.py forwards to it).
@pytest.mark.parametrize("module", ["diff4rec_jax.datasets.prepare",
                                    "diff4rec_jax.prepare"])
def test_cli(tmp_path, module):
  raw = _write_raw(tmp_path, "movielens_tab")
  d = tmp_path / "data"
  env = {**os.environ, "PYTHONPATH": REPO}
  ok = subprocess.run(
      [sys.executable, "-m", module, "--dataset=ml-100k",
       f"--data_dir={d}", f"--raw_file={raw}"],
      capture_output=True, text=True, env=env, cwd=REPO, check=False)
  assert ok.returncode == 0, ok.stderr
  assert ok.stdout.strip() == str(d / "ml-100k.txt")
  assert (d / "ml-100k.txt").read_text() == EXPECTED_TEXT
  bad = subprocess.run(
      [sys.executable, "-m", module, "--dataset=yelp",
       f"--data_dir={d}"],
      capture_output=True, text=True, env=env, cwd=REPO, check=False)
  assert bad.returncode == 1
  assert "yelp_academic_dataset_review.json" in bad.stderr
  assert "python -m diff4rec_jax.datasets.prepare --dataset=yelp" in bad.stderr


@pytest.mark.parametrize("name,flag", [("prepare", "--dataset"),
                                       ("synthetic", "--scale")])
def test_old_command_names_still_work(name, flag):
  # `python -m diff4rec_jax.<name> --help` prints the help of the command's
  # new name, flags included, and exits as it does (absl: 1 after --help).
  env = {**os.environ, "PYTHONPATH": REPO}
  old, new = [subprocess.run([sys.executable, "-m", m, "--help"],
                             capture_output=True, text=True, env=env,
                             cwd=REPO, check=False)
              for m in (f"diff4rec_jax.{name}",
                        f"diff4rec_jax.datasets.{name}")]
  assert old.returncode == new.returncode, old.stderr
  assert f"{flag}:" in old.stdout
  assert f"python -m diff4rec_jax.datasets.{name}" in old.stdout
  assert old.stdout == new.stdout and old.stderr == new.stderr


def test_ensure_unknown_dataset(tmp_path):
  with pytest.raises(data.DataError, match="unknown dataset 'netflix'"):
    prepare.ensure_dataset("netflix", str(tmp_path))


def test_ensure_returns_existing_staged_file():
  d = _shared_data_dir()
  if d is None:
    pytest.skip("shared data not found")
  assert prepare.ensure_dataset("ml-100k", d) == os.path.join(
      d, "ml-100k.txt")


# ---------------------------------------------------------------------------
# ensure_for_config: the fetch-if-missing step before data.load
# ---------------------------------------------------------------------------
def _data_config(**kw):
  from ml_collections import ConfigDict  # pylint: disable=g-import-not-at-top
  return ConfigDict({"name": "ml-1m", "dir": "", "path": "", "download": True,
                     **kw})


def test_ensure_for_config_fetches_a_missing_builtin(tmp_path, monkeypatch,
                                                     caplog):
  calls = []
  monkeypatch.setattr(prepare, "ensure_dataset",
                      lambda *a, **kw: calls.append((a, kw)) or "made")
  with caplog.at_level("INFO"):
    got = prepare.ensure_for_config(_data_config(dir=str(tmp_path)))
  assert got == "made" and calls == [(("ml-1m", str(tmp_path)), {})]
  assert "dataset ml-1m not found locally; preparing it" in caplog.text


@pytest.mark.parametrize("kw", [
    dict(download=False),            # off: data.load says how to get it
    dict(path="mine.txt"),           # an explicit file is never fetched
    dict(name="toys"),               # unknown: data.load names the choices
])
def test_ensure_for_config_leaves_the_rest_to_data_load(tmp_path, monkeypatch,
                                                        kw):
  monkeypatch.setattr(prepare, "ensure_dataset", lambda *a, **k: 1 / 0)
  c = _data_config(dir=str(tmp_path), **kw)
  assert prepare.ensure_for_config(c) is None
  with pytest.raises(data.DataError):
    data.load(c)


def test_ensure_for_config_keeps_a_present_file(monkeypatch):
  d = _shared_data_dir()
  if d is None:
    pytest.skip("shared data not found")
  monkeypatch.setattr(prepare, "ensure_dataset", lambda *a, **k: 1 / 0)
  assert prepare.ensure_for_config(_data_config(name="ml-100k", dir=d)) is None


def test_data_load_alone_never_downloads(tmp_path, monkeypatch):
  monkeypatch.setattr(prepare, "ensure_dataset", lambda *a, **k: 1 / 0)
  with pytest.raises(data.DataError) as e:
    data.load(_data_config(dir=str(tmp_path)))
  assert "not found" in str(e.value)
  assert ("python -m diff4rec_jax.datasets.prepare --dataset=ml-1m "
          f"--data_dir={tmp_path}") in str(e.value)
