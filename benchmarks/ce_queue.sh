#!/usr/bin/env bash
# Queue A of benchmarks/experiments.sh: sampled-softmax CE against full CE
# (issue 22: quality within 2% of full CE's validation NDCG@10 on Beauty and
# ML-1M), strong setting (the dataset configs), SASRec base, seed 0.
# Resumable: finished cells are skipped.
#
#   DIFF4REC_DATA_DIR=../shared/data bash benchmarks/ce_queue.sh RUNS
#
# Finished in session 15 (Beauty, 1,024 negatives): uniform valid NDCG@10
# 0.0356, popularity with logQ 0.0387, against full CE's 0.0404 (session
# 5-7, older code). Next: 8,192 popularity negatives, full CE with today's
# code, then the best sampler and full CE on ML-1M.
set -uo pipefail
RUNS=${1:?usage: ce_queue.sh RUNS}
cd "$(dirname "$0")/.."
cell() {  # dataset root report overrides
  python benchmarks/reproduce.py --datasets="$1" --models=sasrec \
    --modes=base --seeds=0 --root="$2" --report="$2/$3" --overrides="$4"
}
S="--config.train.loss=sampled_ce --config.train.negative_sampler"
for v in uniform popularity; do
  cell beauty "$RUNS/sampled/$v" REPORT.md "$S=$v"
done
cell beauty "$RUNS/sampled/popularity8k" REPORT.md \
  "$S=popularity --config.train.num_negatives=8192"
cell beauty "$RUNS/fullce" REPORT.md ""
cell ml-1m "$RUNS/sampled/popularity" REPORT_ml1m.md "$S=popularity"
cell ml-1m "$RUNS/fullce" REPORT_ml1m.md ""
