#!/usr/bin/env bash
# Started by benchmarks/experiments.sh when it pins its two queues to one core
# each: once either queue ends, stops the other (its cell saves a checkpoint)
# and restarts both unpinned (PIN=0; finished cells are skipped), so the
# remaining queue has both cores instead of leaving one idle.
#
#   bash benchmarks/unpin_when_alone.sh PGID_A PGID_B EXPERIMENTS_SH COMMIT
set -uo pipefail
a=$1 b=$2 experiments=$3 commit=$4
while kill -0 "$a" 2> /dev/null && kill -0 "$b" 2> /dev/null; do
  sleep 60
done
echo "$(date -Is): a queue ended; stopping the other to restart it unpinned"
# Each queue is its own process group (setsid); its running cell is in its
# own session and is stopped by the runner, which forwards the SIGTERM.
kill -TERM -- "-$a" "-$b" 2> /dev/null
while pgrep -f "benchmarks/(reproduce.py|tune_beauty_paper.sh|paper_queue.sh|strong_queue.sh)" > /dev/null \
      || pgrep -f "diff4rec_jax.main" > /dev/null; do
  sleep 10
done
PIN=0 bash "$experiments" "$commit"
