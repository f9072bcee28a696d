#!/usr/bin/env bash
# Session 20's probes: does the paper setting's augmentation change when
# every copy brings in a new item? At ratio 0.1, n = round_half_up(0.1 N)
# replaces nothing in a sequence of under 5 items, so 50.8% of Beauty's
# and 43.6% of Yelp's copies are reordered originals
# (benchmarks/copy_stats.py). augment.min_replaced=1 replaces at least one
# item in every copy (the max(1, .) of common sequence augmentations).
# Each probe is a paper-grid cell (configs/paper.py:<dataset>, ratio 0.1,
# generator seed 0, the grid's generator linked in) with that one change,
# in a root of its own; resumable, finished cells are skipped. Run it
# beside the queues (benchmarks/experiments.sh lets a probe root run):
#
#   DIFF4REC_DATA_DIR=../shared/data bash benchmarks/probes_s20.sh RUNS
#
# 1. probe_min1 (Beauty): aug and diff4rec, seed 0, one shared pool;
#    compare with RUNS/paper's Beauty aug / diff4rec s0 on validation.
# 2. probe_gen30: session 19's third probe (probes_s19.sh), moved here
#    behind 1.
# 3. probe_min1 (Yelp): diff4rec seed 0, the cell whose lift over the
#    duplicate control (+11.8% / +8.5%) is the one sign that generated
#    items add something.
# It first waits for session 19's running probe (probe_teacher_self) to
# end; stop benchmarks/probes_s19.sh itself before starting this, or its
# probe_gen30 runs first. RUNS is used after a cd to the repository root:
# give an absolute path.
set -uo pipefail
RUNS=${1:?usage: probes_s20.sh RUNS}
cd "$(dirname "$0")/.."
while pgrep -f -- "--root=$RUNS/probe_teacher" \
      > /dev/null; do
  sleep 60
done
C="--config.generator.seed=0 --config.augment.ratio=0.1"
probe() {  # root dataset modes extra-overrides
  python benchmarks/reproduce.py --setting=paper --datasets="$2" \
    --models=sasrec --modes="$3" --seeds=0 --root="$RUNS/$1" \
    --report="$RUNS/$1/REPORT.md" --overrides="$C $4"
}
link() {  # root dataset mode
  bash benchmarks/link_topm.sh "$RUNS/$1/$2-sasrec-$3-s0" \
    "$RUNS/paper/$2-sasrec-aug-s0/generator/generator_topm.npz"
}
link probe_min1 beauty aug
probe probe_min1 beauty aug,diff4rec "--config.augment.min_replaced=1"
probe probe_gen30 beauty aug "--config.generator.epochs=30"
link probe_min1_yelp yelp diff4rec
probe probe_min1_yelp yelp diff4rec "--config.augment.min_replaced=1"
