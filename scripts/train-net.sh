#!/usr/bin/env bash
# Train (or resume) one net of a plan on a GPU node: the CLI's `transfer train`, with its exit status.
#   scripts/train-net.sh NET [PLAN] [GPU]      e.g. scripts/train-net.sh half0A-3-half0B paper 0
# Environment: TRANSFER (default: .venv/bin/transfer), MAX_SECONDS (snapshot and exit 75 after that
# many seconds: set it a few minutes under a batch job's time limit, then resubmit to resume),
# PRECISION (fp32 or tf32; default: the plan's `precision`), DETERMINISTIC (1: cuDNN deterministic
# algorithms only, 0: any; default: the plan's `deterministic`).
# Exit status: 0 done, 1 caffe failed, 2 usage/plan/data error, 73 another process trains it,
# 74 not enough disk for its snapshots, 75 stopped with a snapshot (run again to resume).
set -euo pipefail
cd "$(dirname "$0")/.."
NET=${1:?usage: $0 NET [PLAN] [GPU]}
PLAN=${2:-paper}
GPU=${3:-${CUDA_DEVICE:-0}}
TRANSFER=${TRANSFER:-.venv/bin/transfer}
args=(train "$NET" --plan "$PLAN" --gpu "$GPU")
[[ -n "${MAX_SECONDS:-}" ]] && args+=(--max-seconds "$MAX_SECONDS")
source "$(dirname "$0")/precision-args.sh" train-net.sh
# exec: SIGTERM from the batch system reaches transfer itself, which makes caffe snapshot.
exec "$TRANSFER" "${args[@]}"
