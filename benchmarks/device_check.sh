#!/usr/bin/env bash
# The prepared accelerator check of issue 22, for a session that is lent a
# GPU (the device tool's `run`: one bare machine, nothing reachable from it,
# at most 10 minutes a command and 15 minutes of device time in all, the
# machine's start included).
#
#   here:   DIFF4REC_DATA_DIR=../shared/data bash benchmarks/device_check.sh --prepare
#   device: run(command="bash benchmarks/device_check.sh", carry=[".device"],
#               timeout_s=480)
#
# The steps' limits (T_TEST + T_CELL + T_COST = 60 + 150 + 120 s) and the
# unlimited set-up (wheel install, the first jax.devices()) come to about
# 6-7 minutes. The ML-1M cell is kept in /tmp/device_ml1m: a second call
# made at once (the machine stays warm only about 30 s after a call) with
# STEPS=cell resumes it; a call on a fresh machine starts it over.
#
# --prepare fills .device/ (in .gitignore: never committed) with what the
# device image lacks: the wheels of ml-collections and tensorboardX (pure
# Python; jax, flax, optax and orbax are there) and the ML-1M and Beauty
# files. On the device the script writes these files to $OUT (flat; at
# most 8 come back):
#   env.txt             nvidia-smi, Python and package versions, devices
#   pytest.txt          the model and metric tests on the accelerator
#   ml1m.log            the log of the ML-1M pipeline end to end in the
#                       paper setting, mode diff4rec: generator, warm-up,
#                       copies, curriculum, training, test
#   ml1m_results.json   that run's results.json, if it finished
#   ml1m_metrics.jsonl  its validation scores so far, if it was cut
#   cell_cost.txt       benchmarks/cell_cost.py on ML-1M and Beauty, paper
#                       and strong settings: seconds per epoch, evaluation
#                       and generator phase, minutes per cell
#
# Settings (environment): STEPS, the steps to run (default
# "test,cell,cost"); T_TEST, T_CELL, T_COST, each step's limit in seconds
# (must be > 0: GNU timeout reads 0 as no limit); DEVICE_CHECK_QUICK=1,
# tiny epochs, only to try the script on a CPU. A step that fails or runs
# out of time is reported and the next one runs.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
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
shopt -s nullglob
WHEELS=("$DEV"/whl/*.whl)
if (( ${#WHEELS[@]} < 2 )) || [[ ! -f "$DEV/data/ml-1m.txt.gz" ||
                                 ! -f "$DEV/data/beauty.txt.gz" ]]; then
  echo "device_check: $DEV/ is missing or incomplete (want 2 wheels and" \
       "the ML-1M and Beauty files): run with --prepare here first"
  exit 2
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target /tmp/site "${WHEELS[@]}" || exit 1
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export DIFF4REC_DATA_DIR=$PWD/$DEV/data PYTHONUNBUFFERED=1
export PYTHONDONTWRITEBYTECODE=1
STEPS=${STEPS:-test,cell,cost}
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
step() { [[ ",$STEPS," == *",$1,"* ]]; }
# SIGTERM at the limit (the trainer saves and stops), SIGKILL 30 s later.
limit() { timeout -k 30 "$@"; }

{
  date -u; nvidia-smi 2>&1 | head -15
  python3 --version
  python3 -m pip list 2>/dev/null | grep -iE "^(jax|jaxlib|jax-cuda[0-9]+-\
(plugin|pjrt)|flax|optax|orbax-checkpoint|ml.collections|tensorboardx|numpy) "
  limit 120 python3 -c "import jax; print('jax.devices():', jax.devices())"
} > "$OUT/env.txt" 2>&1
echo "env: $(tail -1 "$OUT/env.txt")"

if step test; then
  limit "$T_TEST" python3 -m pytest -q -x -p no:cacheprovider \
    tests/models_test.py tests/metrics_test.py > "$OUT/pytest.txt" 2>&1
  echo "pytest: rc $? ($(tail -1 "$OUT/pytest.txt"))"
fi

if step cell; then
  WD=/tmp/device_ml1m   # kept: a rerun on the same warm machine resumes it
  limit "$T_CELL" python3 -m diff4rec_jax.main \
    --config=configs/paper.py:ml1m --workdir="$WD" --config.mode=diff4rec \
    ${CELL_ARGS[@]+"${CELL_ARGS[@]}"} > "$OUT/ml1m.log" 2>&1
  rc=$?
  if [[ -f "$WD/results.json" ]]; then
    cp "$WD/results.json" "$OUT/ml1m_results.json"
  elif [[ -f "$WD/metrics.jsonl" ]]; then
    cp "$WD/metrics.jsonl" "$OUT/ml1m_metrics.jsonl"
  fi
  echo "ml1m cell: rc $rc (124: cut by its ${T_CELL} s limit; a call" \
       "at once with STEPS=cell resumes it from $WD)"
  grep -E "phase:|best epoch" "$OUT/ml1m.log" | cut -c1-160 | tail -12
fi

if step cost; then
  limit "$T_COST" python3 benchmarks/cell_cost.py "${COST_ARGS[@]}" \
    > "$OUT/cell_cost.txt" 2>&1
  echo "cell_cost: rc $?"
  tail -20 "$OUT/cell_cost.txt"
fi
