#!/usr/bin/env bash
# Multi-GPU / multi-node launcher: one process per host, each process driving
# all of its host's GPUs; the processes join through jax.distributed.
#
# Run this script once on every node (it starts one training process there):
#
#   # SLURM: one task per node; everything is read from SLURM's environment.
#   srun --nodes=4 --ntasks-per-node=1 --gpus-per-node=8 \
#     launch/multi_gpu.sh --config=configs/ml1m.py --workdir=/shared/runs/ml1m
#
#   # Anything else (by hand, mpirun without SLURM, a scheduler of your own):
#   COORDINATOR_ADDRESS=10.0.0.1 NUM_PROCESSES=2 PROCESS_ID=0 \
#     launch/multi_gpu.sh --config=configs/ml1m.py --workdir=/shared/runs/ml1m
#   (and PROCESS_ID=1 on the second node)
#
#   # One node with several GPUs needs no launcher: one process sees them all.
#   python -m diff4rec_jax.main --config=configs/ml1m.py --workdir=runs/ml1m
#
# Usage: launch/multi_gpu.sh [--dry-run] [--config=FILE] [--workdir=DIR]
#                            [--config.FIELD=VALUE ...] [-- MAIN_FLAGS ...]
#
# Where each value comes from (first that is set wins):
#   config          --config, $CONFIG (required)
#   workdir         --workdir, $WORKDIR (required). It must be ONE folder
#                   that every node sees at the same path (NFS, Lustre, a
#                   gcsfuse mount): process 0 writes the run files (the
#                   others read its generator top-M file), and all
#                   processes write and read the Orbax checkpoints there.
#   data            $DIFF4REC_DATA_DIR as usual. Fetch the dataset ONCE
#                   before launching (python -m diff4rec_jax.datasets.prepare
#                   --dataset=... --data_dir=DIR): processes that download
#                   into one shared folder at the same time would collide.
#   processes       $NUM_PROCESSES, $SLURM_NNODES, else 1
#   process id      $PROCESS_ID, $SLURM_NODEID, else 0
#   coordinator     $COORDINATOR_ADDRESS (host or host:port), the first host
#                   of `scontrol show hostnames "$SLURM_JOB_NODELIST"`, else
#                   127.0.0.1 (one process)
#   port            $COORDINATOR_PORT, else one derived from $SLURM_JOB_ID
#                   (as JAX does, so two jobs sharing a node do not clash),
#                   else 12355
#   local GPUs      $GPUS_PER_NODE, else the count of `nvidia-smi --list-gpus`
#   python          $PYTHON, else python3
#
# What it exports for `python -m diff4rec_jax.main --distributed`, i.e. for
# jax.distributed.initialize():
#   JAX_COORDINATOR_ADDRESS  read by jax.distributed.initialize() itself.
#   JAX_LOCAL_DEVICE_IDS     read by jax.distributed.initialize() itself:
#                            0..GPUS-1. Without it JAX's SLURM detection
#                            gives each process only GPU $SLURM_LOCALID.
#   DIFF4REC_NUM_PROCESSES, DIFF4REC_PROCESS_ID
#                            jax.distributed.initialize() (JAX 0.10) does not
#                            read these from the environment; main.py passes
#                            them as num_processes= / process_id=. Under
#                            srun, JAX also finds them itself (SLURM_NTASKS,
#                            SLURM_PROCID), equal here (one task per node).
# --dry-run prints these exports and the command instead of running it.

set -euo pipefail

# usage, die, shell_join.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

dry_run=0
config="${CONFIG:-}"
workdir="${WORKDIR:-}"
extra=()
while (($#)); do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --config=*) config="${1#--config=}" ;;
    --workdir=*) workdir="${1#--workdir=}" ;;
    --config.*=*) extra+=("$1") ;;
    -h | --help) usage ;;
    --) shift; extra+=("$@"); break ;;
    *) die "unknown argument '$1' (main.py flags go after '--')" ;;
  esac
  shift
done
[[ -n "$config" ]] || die "no config: pass --config=FILE or set CONFIG"
[[ -n "$workdir" ]] || die "no workdir: pass --workdir=DIR or set WORKDIR"

# -- Who am I, how many are we, where is process 0 -------------------------
if [[ -n "${SLURM_NTASKS:-}" && -n "${SLURM_NNODES:-}" && -z "${NUM_PROCESSES:-}" \
      && "$SLURM_NTASKS" != "$SLURM_NNODES" ]]; then
  die "SLURM_NTASKS=$SLURM_NTASKS but SLURM_NNODES=$SLURM_NNODES: start one" \
      "task per node (srun --ntasks-per-node=1); each process uses all GPUs" \
      "of its node"
fi
num_processes="${NUM_PROCESSES:-${SLURM_NNODES:-1}}"
process_id="${PROCESS_ID:-${SLURM_NODEID:-0}}"
if ! is_uint "$num_processes" || ((num_processes < 1)); then
  die "NUM_PROCESSES=$num_processes: expected an integer >= 1"
fi
if ! is_uint "$process_id" || ((process_id >= num_processes)); then
  die "PROCESS_ID=$process_id: expected an integer in [0, $num_processes)"
fi

coordinator="${COORDINATOR_ADDRESS:-}"
if [[ -z "$coordinator" && -n "${SLURM_JOB_NODELIST:-}" ]]; then
  command -v scontrol >/dev/null ||
    die "SLURM_JOB_NODELIST is set but scontrol is not on PATH; set" \
        "COORDINATOR_ADDRESS"
  coordinator="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
  [[ -n "$coordinator" ]] ||
    die "scontrol show hostnames '$SLURM_JOB_NODELIST' printed no host"
fi
if [[ -z "$coordinator" ]]; then
  ((num_processes == 1)) ||
    die "NUM_PROCESSES=$num_processes but no coordinator: set" \
        "COORDINATOR_ADDRESS to the host of process 0 (or run under SLURM)"
  coordinator=127.0.0.1
fi
if [[ "$coordinator" != *:* ]]; then
  if [[ -n "${COORDINATOR_PORT:-}" ]]; then
    port="$COORDINATOR_PORT"
  elif [[ -n "${SLURM_JOB_ID:-}" ]] && is_uint "$SLURM_JOB_ID"; then
    port=$((SLURM_JOB_ID % 4096 + 61440))
  else
    port=12355
  fi
  is_uint "$port" || die "COORDINATOR_PORT=$port: expected a port number"
  coordinator="$coordinator:$port"
fi

gpus="${GPUS_PER_NODE:-}"
if [[ -z "$gpus" ]] && command -v nvidia-smi >/dev/null; then
  gpus="$(nvidia-smi --list-gpus | grep -c '^GPU' || true)"
fi
local_ids=""
if [[ -n "$gpus" ]]; then
  if ! is_uint "$gpus" || ((gpus < 1)); then
    die "GPUS_PER_NODE=$gpus: expected an integer >= 1"
  fi
  local_ids="$(seq -s, 0 $((gpus - 1)))"
fi

# -- The command -------------------------------------------------------------
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cmd=("${PYTHON:-python3}" -m diff4rec_jax.main)
((num_processes > 1)) && cmd+=(--distributed)
cmd+=("--config=$config" "--workdir=$workdir" "${extra[@]}")

exports=(
  "JAX_COORDINATOR_ADDRESS=$coordinator"
  "DIFF4REC_NUM_PROCESSES=$num_processes"
  "DIFF4REC_PROCESS_ID=$process_id"
)
[[ -n "$local_ids" ]] && exports+=("JAX_LOCAL_DEVICE_IDS=$local_ids")

if ((dry_run)); then
  echo "# process $process_id of $num_processes, coordinator $coordinator," \
       "GPUs per node: ${gpus:-all visible}"
  for kv in "${exports[@]}"; do
    echo "export $(shell_join "$kv")"
  done
  shell_join cd "$repo"
  shell_join "${cmd[@]}"
  exit 0
fi

for kv in "${exports[@]}"; do
  export "${kv?}"
done
cd "$repo"
exec "${cmd[@]}"
