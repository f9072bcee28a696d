#!/usr/bin/env bash
# Rewrites the two grid reports from the finished cells under RUNS (no cell
# is run): results/REPRODUCTION.md (strong setting) and
# results/REPRODUCTION_paper.md (paper setting), with their plots. A
# session's end: this, `python benchmarks/archive.py save $RUNS
# results/runs`, then a commit.
#
#   DIFF4REC_DATA_DIR=../shared/data bash benchmarks/reports.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-/work/runs}
: "${DIFF4REC_DATA_DIR:?set DIFF4REC_DATA_DIR to the staged datasets}"
python benchmarks/reproduce.py --datasets=beauty,yelp,ml-1m --models=sasrec \
  --modes=base,aug,diff4rec --root="$RUNS/strong" \
  --report=results/REPRODUCTION.md --report_only
python benchmarks/reproduce.py --setting=paper --datasets=beauty,yelp,ml-1m \
  --models=sasrec,gru4rec,caser \
  --modes=base,aug,diff4rec,popular,uniform,duplicate \
  --root="$RUNS/paper" --report=results/REPRODUCTION_paper.md --report_only
