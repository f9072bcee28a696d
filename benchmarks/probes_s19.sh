#!/usr/bin/env bash
# Session 19's probes of why the paper setting's augmentation lifts Yelp and
# not Beauty (results/log/tuning.md, "Session 19"). Each is the paper grid's
# Beauty aug seed-0 cell (configs/paper.py:beauty, ratio 0.1, generator
# seed 0) with one thing changed, in a root of its own; resumable, finished
# cells are skipped. Run it beside the queues (benchmarks/experiments.sh
# lets a probe root run beside them):
#
#   DIFF4REC_DATA_DIR=../shared/data bash benchmarks/probes_s19.sh RUNS
#
# 1. probe_teacher: candidates from a stronger model, the strong setting's
#    Beauty base cell (sampled CE; valid NDCG@10 0.0406 against the paper
#    setting's 0.0155).
# 2. probe_teacher_self: candidates from the paper setting's own base cell
#    (a teacher as good as the student: x1.0).
# 3. probe_gen30: the generator trained 30 epochs instead of 10 (Yelp's
#    count; Beauty's loss was still falling at 10).
set -uo pipefail
RUNS=${1:?usage: probes_s19.sh RUNS}
cd "$(dirname "$0")/.."
C="--config.generator.seed=0 --config.augment.ratio=0.1"
T="--config.augment.candidates=teacher --config.augment.teacher_workdir"
probe() {  # name extra-overrides
  python benchmarks/reproduce.py --setting=paper --datasets=beauty \
    --models=sasrec --modes=aug --seeds=0 --root="$RUNS/$1" \
    --report="$RUNS/$1/REPORT.md" --overrides="$C $2"
}
probe probe_teacher "$T=$RUNS/sampled/popularity8k/beauty-sasrec-base-s0"
probe probe_teacher_self "$T=$RUNS/paper/beauty-sasrec-base-s0"
probe probe_gen30 "--config.generator.epochs=30"
