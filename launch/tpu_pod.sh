#!/usr/bin/env bash
# Cloud TPU pod launcher: install the repo on every worker of a TPU VM slice
# and start one training process per worker (they find each other through
# jax.distributed.initialize(), which reads the pod's topology by itself).
#
# Usage: launch/tpu_pod.sh [--dry-run] [--tpu=NAME] [--zone=ZONE]
#          [--project=PROJECT] [--config=FILE] [--workdir=DIR]
#          [--source=git|scp] [--repo-url=URL] [--ref=REF] [--data-dir=DIR]
#          [--skip-setup] [--detach] [--config.FIELD=VALUE ...]
#          [-- MAIN_FLAGS ...]
#
# Example:
#   launch/tpu_pod.sh --tpu=my-v4-32 --zone=us-central2-b \
#     --config=configs/ml1m.py --workdir=/mnt/shared/runs/ml1m \
#     --config.train.batch_size=1024
#
# Arguments (each also read from the environment variable shown):
#   --tpu        $TPU_NAME      the TPU VM (required)
#   --zone       $ZONE          its zone (required)
#   --project    $PROJECT       GCP project (default: gcloud's configured one)
#   --config     $CONFIG        config file, relative to the repo (required)
#   --workdir    $WORKDIR       run folder (required), see below
#   --source     $SOURCE        git (default): clone --repo-url on each
#                               worker; scp: copy this checkout (uncommitted
#                               changes included) to each worker
#   --repo-url   $REPO_URL      for --source=git (default: this checkout's
#                               'origin' remote)
#   --ref        $REPO_REF      branch, tag or commit to check out (default:
#                               the remote's default branch)
#   --data-dir   $DATA_DIR      DIFF4REC_DATA_DIR on the workers (default:
#                               unset, so each worker fetches the dataset
#                               into its copy's ./data on first use)
#   --skip-setup                do not copy/install, only start the run
#   --detach                    run under nohup on the workers (log in
#                               $REMOTE_DIR/train.log) so that closing this
#                               terminal does not stop the run
#   --config.F=V, -- FLAGS      passed on to diff4rec_jax.main
#   $REMOTE_DIR                 the copy's folder on the workers, relative to
#                               the home folder (default: diff4rec_jax)
#   $GCLOUD                     the gcloud binary (default: gcloud)
#   $PYTHON                     the workers' Python (default: python3). JAX
#                               0.10 needs Python >= 3.11: on an image whose
#                               python3 is older (Ubuntu 22.04 has 3.10)
#                               pass e.g. PYTHON=python3.11 or a venv's.
#   --dry-run                   print the commands instead of running them
#
# The workdir must be ONE folder that every worker sees at the same path:
# process 0 writes config.json, metrics.jsonl, results.json and the
# generator's top-M file (which the other workers then read), and all
# workers write and read the Orbax checkpoints (resume included). Use a
# shared file system mounted on all workers: Filestore/NFS, or a Cloud
# Storage bucket mounted with gcsfuse (e.g. /mnt/bucket/runs/ml1m). A bare
# gs://bucket/... path is refused: train.py writes its files with open()
# and os.makedirs, which would silently create a local 'gs:' folder on each
# worker, and checkpointing.py passes the path through os.path.abspath.
# A worker's local disk (the default for relative paths) is not shared.

set -euo pipefail

# usage, die, shell_join.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dry_run=0
skip_setup=0
detach=0
tpu="${TPU_NAME:-}"
zone="${ZONE:-}"
project="${PROJECT:-}"
config="${CONFIG:-}"
workdir="${WORKDIR:-}"
source_mode="${SOURCE:-git}"
repo_url="${REPO_URL:-}"
ref="${REPO_REF:-}"
data_dir="${DATA_DIR:-}"
remote_dir="${REMOTE_DIR:-diff4rec_jax}"
gcloud="${GCLOUD:-gcloud}"
python="${PYTHON:-python3}"
extra=()
while (($#)); do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --skip-setup) skip_setup=1 ;;
    --detach) detach=1 ;;
    --tpu=*) tpu="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --config=*) config="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --source=*) source_mode="${1#*=}" ;;
    --repo-url=*) repo_url="${1#*=}" ;;
    --ref=*) ref="${1#*=}" ;;
    --data-dir=*) data_dir="${1#*=}" ;;
    --config.*=*) extra+=("$1") ;;
    -h | --help) usage ;;
    --) shift; extra+=("$@"); break ;;
    *) die "unknown argument '$1' (main.py flags go after '--')" ;;
  esac
  shift
done

[[ -n "$tpu" ]] || die "no TPU: pass --tpu=NAME or set TPU_NAME"
[[ -n "$zone" ]] || die "no zone: pass --zone=ZONE or set ZONE"
[[ -n "$config" ]] || die "no config: pass --config=FILE or set CONFIG"
[[ -n "$workdir" ]] || die "no workdir: pass --workdir=DIR or set WORKDIR"
if [[ "$workdir" == gs://* ]]; then
  die "--workdir=$workdir: gs:// paths are not supported by train.py yet;" \
      "mount the bucket on every worker (gcsfuse) and pass the mount path"
fi
if [[ "$workdir" != /* ]]; then
  echo "tpu_pod.sh: warning: --workdir=$workdir is relative: each worker" \
       "would write to its own disk; use a shared mount (NFS, gcsfuse)" >&2
fi
[[ "$remote_dir" != /* && "$remote_dir" != *..* ]] ||
  die "REMOTE_DIR=$remote_dir: expected a folder relative to the home folder"
case "$source_mode" in
  git)
    if [[ -z "$repo_url" ]]; then
      repo_url="$(git -C "$repo" remote get-url origin 2>/dev/null)" ||
        die "--source=git needs --repo-url=URL (this checkout has no" \
            "'origin' remote)"
    fi
    ;;
  scp)
    [[ -z "$ref" ]] || die "--ref=$ref: only for --source=git (scp copies" \
      "this checkout as it is)"
    ;;
  *) die "--source=$source_mode: expected git or scp" ;;
esac

gflags=("--zone=$zone")
[[ -n "$project" ]] && gflags+=("--project=$project")

# Runs (or, with --dry-run, prints) one local command.
run() {
  if ((dry_run)); then
    shell_join "$@"
  else
    "$@"
  fi
}

# Runs a shell command line on every worker of the slice at once.
on_all_workers() {
  run "$gcloud" compute tpus tpu-vm ssh "$tpu" "${gflags[@]}" --worker=all \
    "--command=$1"
}

# -- 1. Code on every worker -------------------------------------------------
if ((!skip_setup)); then
  if [[ "$source_mode" == git ]]; then
    # A second launch updates the existing clone instead of failing.
    if [[ -n "$ref" ]]; then
      update="$(shell_join git -C "$remote_dir" fetch --tags origin)"
      checkout=" && $(shell_join git -C "$remote_dir" checkout "$ref")"
    else
      update="$(shell_join git -C "$remote_dir" pull --ff-only)"
      checkout=""
    fi
    on_all_workers "if [ -d $(shell_join "$remote_dir/.git") ]; then $update;\
 else $(shell_join git clone "$repo_url" "$remote_dir"); fi$checkout"
  else
    # The working tree as it is (not .git, not run outputs).
    archive="${TMPDIR:-/tmp}/diff4rec_jax_src.tar.gz"
    run tar -czf "$archive" -C "$repo" --exclude=./.git --exclude=./runs \
      --exclude=./data --exclude=__pycache__ .
    run "$gcloud" compute tpus tpu-vm scp "$archive" "$tpu:" \
      "${gflags[@]}" --worker=all
    on_all_workers "$(shell_join mkdir -p "$remote_dir") && $(shell_join \
      tar -xzf diff4rec_jax_src.tar.gz -C "$remote_dir")"
  fi
  # -- 2. Dependencies: the pinned stack plus the TPU build of the same JAX.
  on_all_workers "cd $(shell_join "$remote_dir") && $(shell_join \
    "$python" -m pip install -q -r requirements.txt 'jax[tpu]==0.10.2')"
fi

# -- 3. The run: one process per worker --------------------------------------
main=("$python" -m diff4rec_jax.main --distributed "--config=$config"
      "--workdir=$workdir" "${extra[@]}")
train="$(shell_join "${main[@]}")"
if [[ -n "$data_dir" ]]; then
  train="DIFF4REC_DATA_DIR=$(shell_join "$data_dir") $train"
fi
if ((detach)); then
  train="nohup $train > train.log 2>&1 < /dev/null &"
fi
on_all_workers "cd $(shell_join "$remote_dir") && $train"
