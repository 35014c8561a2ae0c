#!/usr/bin/env bash
# Train every net of a plan on one GPU node (the CLI's `transfer run`; one net a GPU by default).
#   scripts/run-plan.sh [PLAN] [ONLY]          e.g. scripts/run-plan.sh paper 'base-half0*,half0*'
# GPUs: $GPUS if set (e.g. 0,1,2,3), else those CUDA_VISIBLE_DEVICES names, else every GPU nvidia-smi
# lists. Ctrl-C or SIGTERM: every running net snapshots; rerunning the same command resumes them.
# Progress: `transfer status --plan PLAN`. PRECISION=fp32|tf32 and DETERMINISTIC=1|0 override the
# plan's `precision` and `deterministic` for every net. NETS_PER_GPU=K|auto, MULTI_GPU=auto|off and
# FIGURES=FILE (GPU speed figures) place the nets as `transfer run` does: auto = the simulator's choice.
set -euo pipefail
cd "$(dirname "$0")/.."
PLAN=${1:-paper}
ONLY=${2:-}
TRANSFER=${TRANSFER:-.venv/bin/transfer}
if [[ -z "${GPUS:-}" && -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
  # Inside an allocation (SLURM --gres sets this): CUDA numbers the visible GPUs 0..n-1.
  IFS=, read -r -a visible <<<"$CUDA_VISIBLE_DEVICES"
  GPUS=$(seq -s, 0 $((${#visible[@]} - 1)))
fi
if [[ -z "${GPUS:-}" ]]; then
  GPUS=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | paste -sd, - || true)
  [[ -n "$GPUS" ]] || { echo "run-plan.sh: no GPU found (set GPUS=0,1,... or use: $TRANSFER run --cpu)" >&2; exit 2; }
fi
args=(run --plan "$PLAN" --gpus "$GPUS")
[[ -n "$ONLY" ]] && args+=(--only "$ONLY")
[[ -n "${NETS_PER_GPU:-}" ]] && args+=(--nets-per-gpu "$NETS_PER_GPU")
[[ -n "${MULTI_GPU:-}" ]] && args+=(--multi-gpu "$MULTI_GPU")
[[ -n "${FIGURES:-}" ]] && args+=(--figures "$FIGURES")
source "$(dirname "$0")/precision-args.sh" run-plan.sh
exec "$TRANSFER" "${args[@]}"
