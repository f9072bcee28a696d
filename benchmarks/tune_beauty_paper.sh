#!/usr/bin/env bash
# Augmentation settings for the paper setting, chosen on Beauty's validation
# split (configs/paper.py:beauty, seed 0, validation NDCG@10 of each run's
# best epoch; test is read by the runs but not used to choose).
#
#   DIFF4REC_DATA_DIR=../shared/data bash benchmarks/tune_beauty_paper.sh ROOT
#
# One reproduce.py grid per variant under ROOT/<name> (resumable). All
# variants use one generator (generator.seed=0): the first run trains it,
# the others get its top-M file linked in before they start (train.py
# checks its hash and retrains on a mismatch). Summary:
#   python benchmarks/tune_summary.py ROOT --baseline=base
set -euo pipefail
ROOT=${1:?usage: tune_beauty_paper.sh ROOT}
cd "$(dirname "$0")/.."
O="--config.generator.seed=0"
A="--config.augment"
TOPM=generator/generator_topm.npz
run() {  # name mode extra-overrides
  local cell="$ROOT/$1/beauty-sasrec-$2-s0"
  local src
  src=$(ls "$ROOT"/*/beauty-sasrec-*-s0/$TOPM 2>/dev/null | head -1 || true)
  if [[ "$2" != base && -n "$src" && ! -e "$cell/$TOPM" \
        && ! -e "$cell/config.json" ]]; then
    mkdir -p "$cell/generator" && ln "$src" "$cell/$TOPM"
  fi
  python benchmarks/reproduce.py --setting=paper --datasets=beauty \
    --models=sasrec --modes="$2" --seeds=0 --root="$ROOT/$1" \
    --report="$ROOT/$1/REPORT.md" --overrides="$O $3" || true
}
run aug_paper     aug      ""
run aug_noreorder aug      "$A.reorder=False"
run duplicate     aug      "$A.candidates=uniform $A.ratio=0.0 $A.reorder=False"
run aug_nr_r01    aug      "$A.reorder=False $A.ratio=0.1"
run d4r_noreorder diff4rec "$A.reorder=False"
run d4r_nr_pop    diff4rec "$A.reorder=False $A.schedule=pop"
