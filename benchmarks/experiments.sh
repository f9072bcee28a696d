#!/usr/bin/env bash
# The background experiment queue of issue 22, resumable: run it first thing
# in a session (from the main checkout); a session's end only pauses it.
#
#   DIFF4REC_DATA_DIR=../shared/data bash benchmarks/experiments.sh [COMMIT]
#
# Pins a git worktree at COMMIT (default: HEAD) under $RUNS (default
# /work/runs), so code changed on main meanwhile cannot change a running cell,
# and starts two queues with nohup (two jobs for the 2-core CPU). Every cell
# and probe resumes from its workdir; finished ones are skipped.
#   queue A: benchmarks/strong_queue.sh: the strong-setting grid (Beauty
#            and Yelp with sampled CE, ML-1M with full CE; base, aug,
#            diff4rec, 3 seeds), then the last sampled-vs-full CE checks.
#   queue B: benchmarks/paper_queue.sh: the Beauty validation probes and
#            the choice of the paper setting's augmentation on them (skipped
#            once the grid has started: its choice is frozen), then the
#            paper grid: Beauty and Yelp base, aug, diff4rec and control
#            cells, then ML-1M, then GRU4Rec and Caser on Beauty.
# Before the queues start, the finished runs kept in the repository
# (results/runs) are put back where RUNS has no such workdir; at a
# session's end `python benchmarks/archive.py save $RUNS results/runs` and
# a commit keep the new ones (benchmarks/archive.py;
# benchmarks/archive_loop.sh also saves them every 10 minutes while the
# queues run, into the main checkout's working tree, and packs the
# unfinished runs into results/inflight, never committed, which a fresh
# machine's start unpacks so they resume).
# Logs: $RUNS/queue_a.out, $RUNS/queue_b.out. Progress: `python
# benchmarks/grid_status.py --runs=$RUNS`. Hours left, per grid: `DRY_RUN=1
# bash benchmarks/strong_queue.sh $RUNS` and the same for paper_queue.sh.
# Reports: each root's REPORT.md; `python benchmarks/tune_summary.py
# $RUNS/tune_beauty`; results/REPRODUCTION*.md: benchmarks/reports.sh.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
if ! python -c "import jax, flax, optax, orbax.checkpoint" 2> /dev/null; then
  echo "experiments.sh: the project's requirements are not installed on" \
       "this machine (a fresh one?): pip install -r $REPO/requirements.txt"
  exit 1
fi
RUNS=${RUNS:-/work/runs}
COMMIT=$(git -C "$REPO" rev-parse --short "${1:-HEAD}")
WT="$RUNS/wt-$COMMIT"
DATA=${DIFF4REC_DATA_DIR:?set DIFF4REC_DATA_DIR to the staged datasets}
DATA=$(cd "$DATA" && pwd)
mkdir -p "$RUNS"
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" "$COMMIT"
# A queue, or a grid runner of the queues' roots, still going (a probe with
# a root of its own may run beside them).
BUSY="benchmarks/(tune_beauty_paper|paper_queue|ce_queue|strong_queue)\.sh"
BUSY="$BUSY|reproduce\.py.*--root=$RUNS/(paper|strong|sampled|fullce|tune_beauty)"
if pgrep -f "$BUSY" > /dev/null; then
  echo "experiment runs are already going:"; pgrep -af "$BUSY"; exit 1
fi
# A watcher left from an earlier start (its queues gone) would restart
# queues of its own later.
pkill -f "benchmarks/unpin_when_alone.sh" || true
# So would an archive loop left from it (benchmarks/archive_loop.sh).
if [[ -f "$RUNS/archive_loop.pid" ]]; then   # only if that pid is one
  pkill -F "$RUNS/archive_loop.pid" -f "benchmarks/archive_loop.sh" || true
fi
# Finished runs kept in the repository (benchmarks/archive.py; a fresh
# machine starts without /work/runs) go back where RUNS has no workdir.
# So do the unfinished ones the last machine packed (archive.py carry):
# they resume from their last checkpoints.
python "$REPO/benchmarks/archive.py" restore "$REPO/results/runs" "$RUNS" \
  --inflight="$REPO/results/inflight"
cd "$WT"
export DIFF4REC_DATA_DIR="$DATA"
# One persistent XLA compilation cache for every cell of both queues (the
# grid runner passes it on): a cell's first epochs compile one step per
# length-bucket pair, minutes on this CPU, again after every restart.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$RUNS/jit_cache}"
# On a 2-core machine each queue gets one core and one XLA thread (PIN=0
# turns this off). Session 16, Beauty, 6-epoch runs side by side
# (results/README.md, "Two background queues on two cores"): the
# paper-setting SASRec trains 5.0-5.2 s an epoch per pinned job against
# 6.0-6.1 s for two jobs sharing both cores (x1.18-1.21); the
# strong setting's sampled-CE SASRec is level (49 s an epoch either way).
# When one queue ends, benchmarks/unpin_when_alone.sh restarts the other
# unpinned, so that it gets both cores.
A=() B=()
if [[ "${PIN:-1}" == 1 && $(nproc) -eq 2 ]] && command -v taskset > /dev/null
then
  ONE="XLA_FLAGS=--xla_cpu_multi_thread_eigen=false"
  A=(env "$ONE" taskset -c 0) B=(env "$ONE" taskset -c 1)
  echo "2 cores: queue A on core 0, queue B on core 1, one XLA thread each"
fi
# setsid: each queue is its own process group (its pid); its cells run in
# sessions of their own (runner.py): benchmarks/pause_runs.sh stops both.
nohup setsid ${A[@]+"${A[@]}"} bash benchmarks/strong_queue.sh "$RUNS" \
  >> "$RUNS/queue_a.out" 2>&1 &
PA=$!
mkdir -p "$RUNS/tune_beauty/base"
ln -sfn "$RUNS/paper/beauty-sasrec-base-s0" \
  "$RUNS/tune_beauty/base/beauty-sasrec-base-s0"
nohup setsid ${B[@]+"${B[@]}"} bash benchmarks/paper_queue.sh "$RUNS" \
  >> "$RUNS/queue_b.out" 2>&1 &
PB=$!
if ((${#A[@]})); then
  nohup bash benchmarks/unpin_when_alone.sh "$PA" "$PB" \
    "$REPO/benchmarks/experiments.sh" "$COMMIT" >> "$RUNS/unpin.out" 2>&1 &
fi
# The main checkout's copy: it writes there, whatever the pinned commit.
# results/inflight holds packs of unfinished runs: never commit it.
INFLIGHT="$REPO/results/inflight" nohup bash \
  "$REPO/benchmarks/archive_loop.sh" "$RUNS" "$REPO/results/runs" \
  "$PA" "$PB" >> "$RUNS/archive.out" 2>&1 &
echo $! > "$RUNS/archive_loop.pid"
echo "started from $WT; logs $RUNS/queue_a.out, $RUNS/queue_b.out"
