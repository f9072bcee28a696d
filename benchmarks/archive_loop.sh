#!/usr/bin/env bash
# Started by benchmarks/experiments.sh beside its queues: every 10 minutes
# while any of them runs, and once when the last one ends, copies the
# finished runs' small files to the archive (benchmarks/archive.py save),
# so that a cell finished after a session's last commit is at least in
# the main checkout's working tree. With INFLIGHT set, it also packs the
# unfinished runs there (archive.py carry; never committed), so that the
# next session resumes them where this machine's files are gone.
#
#   [INFLIGHT=DIR] bash benchmarks/archive_loop.sh RUNS ARCHIVE PGID...
set -uo pipefail
runs=$1 dest=$2; shift 2
cd "$(dirname "$0")/.."
alive() { for p in "$@"; do kill -0 "$p" 2> /dev/null && return 0; done
          return 1; }
keep() {
  python benchmarks/archive.py save "$runs" "$dest" \
    ${INFLIGHT:+"--inflight=$INFLIGHT"}
}
while alive "$@"; do
  sleep "${ARCHIVE_EVERY_S:-600}"
  keep
done
keep
