#!/usr/bin/env bash
# Gives a fresh cell (no config.json, no top-M file yet) a hard link to the
# first existing generator top-M file among those named, so that cells in
# other roots reuse a generator (runner.share_generator does this within
# one root). train.py uses the file only if its stored hash matches the
# cell's config, else it retrains. The generator's generator_metrics.jsonl
# (its validation ranking, which the grid's report quotes) comes along as a
# copy: a retraining cell rewrites its own. Always exits 0.
#
#   bash benchmarks/link_topm.sh CELL_DIR TOPM_FILE...
set -uo pipefail
cell=$1; shift
dst="$cell/generator/generator_topm.npz"
[[ -e "$cell/config.json" || -e "$dst" ]] && exit 0
for src in "$@"; do
  if [[ -f "$src" ]]; then
    if mkdir -p "$cell/generator" && ln "$src" "$dst"; then
      metrics="$(dirname "$src")/generator_metrics.jsonl"
      [[ -f "$metrics" ]] && cp "$metrics" "$cell/generator/"
    fi
    exit 0
  fi
done
exit 0
