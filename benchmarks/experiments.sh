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
#   queue A: sampled-softmax CE on Beauty (strong setting, base, seed 0:
#            uniform and popularity negatives, 1,024 of them; then 8,192
#            uniform: 1,024 uniform reached valid NDCG@10 ~0.035 against
#            full CE's 0.0404 of session 5-7), then full CE beside it (the
#            same cell with train.loss=ce, today's code), then the same pair
#            (uniform sampled, full) on ML-1M: the sampled-vs-full check.
#   queue B: benchmarks/paper_queue.sh: the Beauty validation probes,
#            the choice of the paper setting's augmentation on them, then
#            the paper grid's aug, diff4rec and control cells on Beauty and
#            Yelp (their base cells are done), then ML-1M.
# Logs: $RUNS/queue_a.out, $RUNS/queue_b.out. Reports: each root's REPORT.md;
# `python benchmarks/tune_summary.py $RUNS/tune_beauty`.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-/work/runs}
COMMIT=$(git -C "$REPO" rev-parse --short "${1:-HEAD}")
WT="$RUNS/wt-$COMMIT"
DATA=${DIFF4REC_DATA_DIR:?set DIFF4REC_DATA_DIR to the staged datasets}
DATA=$(cd "$DATA" && pwd)
mkdir -p "$RUNS"
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" "$COMMIT"
if pgrep -f "benchmarks/(reproduce.py|tune_beauty_paper.sh|paper_queue.sh)" > /dev/null; then
  echo "experiment runs are already going:"; pgrep -af "reproduce.py"; exit 1
fi
cd "$WT"
export DIFF4REC_DATA_DIR="$DATA"
nohup bash -c "
  for v in uniform popularity; do
    python benchmarks/reproduce.py --datasets=beauty --models=sasrec \
      --modes=base --seeds=0 --root=$RUNS/sampled/\$v \
      --report=$RUNS/sampled/\$v/REPORT.md \
      --overrides=\"--config.train.loss=sampled_ce --config.train.negative_sampler=\$v\"
  done
  python benchmarks/reproduce.py --datasets=beauty --models=sasrec \
    --modes=base --seeds=0 --root=$RUNS/sampled/uniform8k \
    --report=$RUNS/sampled/uniform8k/REPORT.md \
    --overrides=\"--config.train.loss=sampled_ce --config.train.negative_sampler=uniform --config.train.num_negatives=8192\"
  python benchmarks/reproduce.py --datasets=beauty --models=sasrec \
    --modes=base --seeds=0 --root=$RUNS/fullce --report=$RUNS/fullce/REPORT.md
  python benchmarks/reproduce.py --datasets=ml-1m --models=sasrec \
    --modes=base --seeds=0 --root=$RUNS/sampled/uniform \
    --report=$RUNS/sampled/uniform/REPORT_ml1m.md \
    --overrides=\"--config.train.loss=sampled_ce --config.train.negative_sampler=uniform\"
  python benchmarks/reproduce.py --datasets=ml-1m --models=sasrec \
    --modes=base --seeds=0 --root=$RUNS/fullce \
    --report=$RUNS/fullce/REPORT_ml1m.md
  " >> "$RUNS/queue_a.out" 2>&1 &
mkdir -p "$RUNS/tune_beauty/base"
ln -sfn "$RUNS/paper/beauty-sasrec-base-s0" \
  "$RUNS/tune_beauty/base/beauty-sasrec-base-s0"
nohup bash benchmarks/paper_queue.sh "$RUNS" >> "$RUNS/queue_b.out" 2>&1 &
echo "started from $WT; logs $RUNS/queue_a.out, $RUNS/queue_b.out"
