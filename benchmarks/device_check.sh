#!/usr/bin/env bash
# The prepared accelerator check of issue 22, for a session that is lent a
# GPU (the `device` tool: one machine, at most 10 minutes a command and 15
# minutes in all, nothing reachable from it). One command does it all:
#
#   here:   DIFF4REC_DATA_DIR=../shared/data bash benchmarks/device_check.sh --prepare
#   device: run(command="bash benchmarks/device_check.sh", carry=[".device"],
#               timeout_s=400)
#
# The steps' limits add up to about 6 minutes, so that a second call on the
# still-warm machine fits the 15 minutes (it resumes the ML-1M cell).
#
# --prepare fills .device/ (in .gitignore: never committed) with what
# the device image lacks: the wheels of ml-collections and tensorboardX
# (pure Python; jax, flax, optax and orbax are there) and the ML-1M and
# Beauty files. On the device the script writes to $OUT (at most 8 files
# come back):
#   env.txt         nvidia-smi, Python and package versions, jax.devices()
#   pytest.txt      the model and metric tests on the accelerator
#   ml1m.log        the ML-1M pipeline end to end in the paper setting, mode
#   ml1m.json       diff4rec (generator, warm-up, copies, curriculum,
#                   training, test): its log and results.json (or, if cut
#                   by its time limit, the validation scores it reached)
#   cell_cost.txt   benchmarks/cell_cost.py on ML-1M and Beauty, paper and
#                   strong settings: seconds per epoch, evaluation and
#                   generator phase, minutes per cell
# Each step has its own time limit (T_TEST, T_CELL, T_COST seconds), so a
# slow or failing one leaves the others their time.
set -uo pipefail
cd "$(dirname "$0")/.."
DEV=.device

if [[ "${1:-}" == "--prepare" ]]; then
  DATA=${DIFF4REC_DATA_DIR:?set DIFF4REC_DATA_DIR to the staged datasets}
  mkdir -p "$DEV/whl" "$DEV/data"
  python -m pip download -q --no-deps --only-binary=:all: -d "$DEV/whl" \
    ml-collections==1.1.0 tensorboardX==2.6.5 || exit 1
  cp "$DATA/ml-1m.txt.gz" "$DATA/beauty.txt.gz" "$DEV/data/" || exit 1
  du -sh "$DEV"
  echo "prepared $DEV: now run this script on the device with carry=[\"$DEV\"]"
  exit 0
fi

OUT=${OUT:?OUT: the folder whose files come back (set by the device tool)}
[[ -d "$DEV/whl" && -d "$DEV/data" ]] || {
  echo "device_check: $DEV/ is missing: run with --prepare here first"
  exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target /tmp/site "$DEV"/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export DIFF4REC_DATA_DIR=$PWD/$DEV/data PYTHONUNBUFFERED=1
# Steps' time limits (seconds); the smaller DEVICE_CHECK_QUICK=1 settings
# only try the script on a CPU.
T_TEST=${T_TEST:-60} T_CELL=${T_CELL:-150} T_COST=${T_COST:-120}
CELL_ARGS=()
COST_ARGS=(--datasets=ml-1m,beauty --settings=paper,strong --epochs=4
           --generator_epochs=2)
if [[ "${DEVICE_CHECK_QUICK:-0}" == 1 ]]; then
  CELL_ARGS=(--config.train.num_epochs=1 --config.generator.epochs=1
             --config.augment.warmup_epochs=1 --config.train.eval_every=1)
  COST_ARGS=(--datasets=ml-1m --settings=paper --epochs=2
             --generator_epochs=1)
fi

{
  date -u; nvidia-smi 2>&1 | head -15
  python3 --version
  python3 -m pip list 2>/dev/null | grep -iE \
    "^(jax|jaxlib|jax-cuda|flax|optax|orbax|ml.collections|numpy) "
  python3 -c "import jax; print('jax.devices():', jax.devices())"
} > "$OUT/env.txt" 2>&1
echo "env: $(tail -1 "$OUT/env.txt")"

timeout "$T_TEST" python3 -m pytest -q -x -p no:cacheprovider \
  tests/models_test.py tests/metrics_test.py \
  > "$OUT/pytest.txt" 2>&1
echo "pytest: rc $? ($(tail -1 "$OUT/pytest.txt"))"

WD=/tmp/device_ml1m   # kept: a rerun on the same (warm) machine resumes it
timeout "$T_CELL" python3 -m diff4rec_jax.main \
  --config=configs/paper.py:ml1m --workdir="$WD" --config.mode=diff4rec \
  "${CELL_ARGS[@]}" > "$OUT/ml1m.log" 2>&1
rc=$?
if [[ -f "$WD/results.json" ]]; then
  cp "$WD/results.json" "$OUT/ml1m.json"
else
  cp "$WD/metrics.jsonl" "$OUT/ml1m.json" 2>/dev/null
fi
echo "ml1m cell: rc $rc (124: cut by its ${T_CELL} s limit; resumable" \
     "from $WD while the machine is held)"
grep -E "phase:|best epoch" "$OUT/ml1m.log" | cut -c1-160 | tail -12

timeout "$T_COST" python3 benchmarks/cell_cost.py "${COST_ARGS[@]}" \
  > "$OUT/cell_cost.txt" 2>&1
echo "cell_cost: rc $?"
tail -20 "$OUT/cell_cost.txt"
