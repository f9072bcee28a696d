#!/usr/bin/env bash
# Started by benchmarks/experiments.sh beside its queues: every 10 minutes
# while any of them runs, and once when the last one ends, copies the
# finished runs' small files to the archive (benchmarks/archive.py save),
# so that a cell finished after a session's last commit is at least in
# the main checkout's working tree.
#
#   bash benchmarks/archive_loop.sh RUNS ARCHIVE PGID...
set -uo pipefail
runs=$1 dest=$2; shift 2
cd "$(dirname "$0")/.."
alive() { for p in "$@"; do kill -0 "$p" 2> /dev/null && return 0; done
          return 1; }
while alive "$@"; do
  sleep "${ARCHIVE_EVERY_S:-600}"
  python benchmarks/archive.py save "$runs" "$dest"
done
python benchmarks/archive.py save "$runs" "$dest"
