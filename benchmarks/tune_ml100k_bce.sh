#!/usr/bin/env bash
# Why does augmentation hurt SASRec trained with BCE (one negative)? Probes
# on ML-100K (configs/tiny.py, the ML-100K protocol of results/log/tuning.md
# plus train.loss=bce), 3 seeds each, validation NDCG@10 read from each cell.
#
#   DIFF4REC_DATA_DIR=../shared/data bash benchmarks/tune_ml100k_bce.sh ROOT
#
# Every variant is its own reproduce.py grid under ROOT/<name> (resumable:
# rerun the same command after a stop). Summary: tune_summary.py ROOT.
set -euo pipefail
ROOT=${1:?usage: tune_ml100k_bce.sh ROOT}
cd "$(dirname "$0")/.."
O="--config.train.loss=bce --config.train.num_epochs=200 --config.train.eval_every=2 --config.train.patience=5 --config.generator.epochs=30 --config.augment.warmup_epochs=10 --config.train.checkpoint_every=10"
A="--config.augment"
run() {  # name mode extra-overrides
  python benchmarks/reproduce.py --datasets=ml-100k --models=sasrec \
    --modes="$2" --seeds=0,1,2 --root="$ROOT/$1" \
    --report="$ROOT/$1/REPORT.md" --overrides="$O $3" || true
}
run base          base     ""
run gen           aug      ""
run popular       aug      "$A.candidates=popular"
run uniform       aug      "$A.candidates=uniform"
run shuffle_only  aug      "$A.candidates=uniform $A.ratio=0.0"
run duplicate     aug      "$A.candidates=uniform $A.ratio=0.0 $A.reorder=False"
run gen_noreorder aug      "$A.reorder=False"
run gen_volume    aug      "$A.copies_per_batch=10.0 $A.loss_norm=sum"
run gen_pop       diff4rec "$A.schedule=pop"
run vae           aug      "--config.generator.inference_step=0"
