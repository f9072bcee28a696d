#!/usr/bin/env bash
# Pauses or resumes every background experiment process of RUNS: the
# queues (benchmarks/experiments.sh starts each as a process group) and
# the cells the grid runner starts, each in a session of its own
# (runner.py), so stopping a queue's group leaves its cell running. For a
# benchmark or the full test suite on a machine whose cores the grid
# uses: `stop`, the measurement, then `cont`.
#
#   bash benchmarks/pause_runs.sh stop|cont [RUNS]
set -euo pipefail
sig=${1:?stop or cont}
RUNS=${2:-${RUNS:-/work/runs}}
case "$sig" in
  stop) SIG=STOP;;
  cont) SIG=CONT;;
  *) echo "pause_runs.sh: stop or cont, not '$sig'" >&2; exit 2;;
esac
n=0
# The queues and the grid runners they started (one group each).
for p in $(pgrep -f "benchmarks/(strong|paper|ce)_queue\.sh $RUNS" || true); do
  kill -"$SIG" -- -"$p" 2> /dev/null && n=$((n + 1)) || true
done
# The cells (their own sessions): trainers whose workdir is under RUNS.
for p in $(pgrep -f "diff4rec_jax\.main .*--workdir=$RUNS/" || true); do
  kill -"$SIG" -- -"$p" 2> /dev/null || kill -"$SIG" "$p" 2> /dev/null \
    || continue
  n=$((n + 1))
done
echo "pause_runs.sh: SIG$SIG sent to $n process groups under $RUNS"
