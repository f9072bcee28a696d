#!/usr/bin/env bash
# Queue A of benchmarks/experiments.sh: the strong-setting grid of issue 22
# (step 3: SASRec, configs/<dataset>.py's recipe, base / aug / diff4rec,
# 3 seeds), in RUNS/strong, report RUNS/strong/REPORT.md. Resumable:
# finished cells are skipped.
#
#   DIFF4REC_DATA_DIR=../shared/data bash benchmarks/strong_queue.sh RUNS
#
# The loss per dataset (session 16, benchmarks/cell_cost.py on a quiet
# machine, results/README.md "Cost per grid cell"):
# * Beauty (54,542 items): sampled softmax CE with 8,192 popularity
#   negatives and the logQ correction. On validation it is within 2% of
#   full CE (NDCG@10 0.0406 vs 0.0404, session 15) at 27.9 s per epoch
#   against full CE's 113.3 s. Its seed-0 base cell is the one that
#   measured this (RUNS/sampled/popularity8k), linked in.
# * Yelp (20,033 items): sampled softmax CE with 4,096 popularity negatives
#   (session 18: on Beauty 4,096 came within 1.2% of full CE's validation
#   NDCG@10 at 16.1 s an epoch against 8,192's 27.1 s; Yelp with 8,192
#   took 21.7 s an epoch against full CE's 39.4 s, session 16); a full-CE
#   Yelp base cell at the end checks the gap.
# * ML-1M (3,706 items): full-softmax CE, the config's own loss (25.1 s an
#   epoch; sampling 8,192 negatives would cost more than the catalog).
# All augmented cells of a dataset share one generator (generator.seed=0)
# and each aug/diff4rec pair one pool of copies (runner.share_*).
# Then the remaining sampled-vs-full-CE checks: Beauty with 4,096
# popularity negatives (between 1,024, 4.2% below full CE, and 8,192, only
# 4.1x cheaper: can one count meet both of the issue's targets, within 2%
# and >= 5x cheaper? Run by hand in session 18: yes, -1.2% and 7.2x),
# ML-1M with 1,024 popularity negatives (against the grid's full-CE base
# cell), a full-CE Yelp base cell (against the grid's sampled one), and a
# full-CE Beauty base cell with today's code (the 0.0404 reference is from
# session 5-7).
#
# What is left, starting nothing and writing nothing: DRY_RUN=1 bash
# benchmarks/strong_queue.sh RUNS (every grid's `reproduce.py --dry_run`:
# its cells, done or not, and the hours left from finished cells' times).
set -uo pipefail
RUNS=${1:?usage: strong_queue.sh RUNS}
cd "$(dirname "$0")/.."
S8K="--config.train.loss=sampled_ce --config.train.negative_sampler=popularity --config.train.num_negatives=8192"
S4K="--config.train.loss=sampled_ce --config.train.negative_sampler=popularity --config.train.num_negatives=4096"
G="--config.generator.seed=0"
ROOT="$RUNS/strong"
DRY=()
[[ "${DRY_RUN:-0}" == 1 ]] && DRY=(--dry_run)
links() {  # the seed-0 cells' shared files (not in a dry run)
  src="$RUNS/sampled/popularity8k/beauty-sasrec-base-s0"
  if [[ -e "$src/results.json" && ! -e "$ROOT/beauty-sasrec-base-s0" ]]; then
    ln -s "$src" "$ROOT/beauty-sasrec-base-s0"
  fi
  # Beauty's generator (generator.seed=0) was trained by the paper-setting
  # tuning; train.py uses the linked top-M file only if its hash matches this
  # cell's config, else it retrains.
  bash benchmarks/link_topm.sh "$ROOT/beauty-sasrec-aug-s0" \
    "$RUNS"/tune_beauty/*/beauty-sasrec-*-s0/generator/generator_topm.npz
}
if ((${#DRY[@]} == 0)); then
  mkdir -p "$ROOT"
  links
fi
grid() {  # dataset modes overrides
  python benchmarks/reproduce.py --datasets="$1" --models=sasrec \
    --modes="$2" --root="$ROOT" --report="$ROOT/REPORT.md" \
    --overrides="$3" ${DRY[@]+"${DRY[@]}"}
}
grid beauty base "$S8K"
grid beauty aug,diff4rec "$S8K $G"
grid ml-1m base ""
grid ml-1m aug,diff4rec "$G"
grid yelp base "$S4K"
grid yelp aug,diff4rec "$S4K $G"
cell() {  # dataset root report overrides
  python benchmarks/reproduce.py --datasets="$1" --models=sasrec \
    --modes=base --seeds=0 --root="$2" --report="$2/$3" --overrides="$4" \
    ${DRY[@]+"${DRY[@]}"}
}
cell beauty "$RUNS/sampled/popularity4k" REPORT.md \
  "--config.train.loss=sampled_ce --config.train.negative_sampler=popularity --config.train.num_negatives=4096"
cell ml-1m "$RUNS/sampled/popularity" REPORT_ml1m.md \
  "--config.train.loss=sampled_ce --config.train.negative_sampler=popularity"
cell yelp "$RUNS/fullce" REPORT_yelp.md ""
cell beauty "$RUNS/fullce" REPORT.md ""
