#!/usr/bin/env bash
# The GPU tier (`make test-gpu`), start to end, then one summary table:
#   1. with BUNDLE=archive (scripts/node-bundle.sh): unpack it and take everything from it, offline;
#   2. set-up: the venv, and the Caffe for this machine: on a GPU node (nvidia-smi lists a GPU) the CUDA
#      build for its GPUs' architectures, with cuDNN unless CAFFE_CUDNN=0, on all cores; with
#      TIER_DEVICE=cpu, or where no GPU is visible, the CPU build;
#   3. Caffe's own gtest suite on that build (GPU cases included on a CUDA build);
#   4. the tests of tests/gpu (on GPU 0, or on the CPU with TIER_DEVICE=cpu: TRANSFER_GPU_TIER_DEVICE);
#   5. the CaffeNet benchmarks (benchmarks/bench_gpu_caffenet.py, bench_gpu.py; into BENCHMARKS.md on a GPU);
#   6. the table: build time, each numeric check, gtest counts, ms/iteration fp32/tf32, data-layer waits.
# Every step runs even when one before it failed (the table shows which); the exit status is 1 then.
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
TIER_DEVICE=${TIER_DEVICE:-}
summary=$(mktemp "${TMPDIR:-/tmp}/gpu-tier.XXXXXX")
export TRANSFER_GPU_TIER_SUMMARY=$summary
failed=()
step() { echo "test-gpu: == $*"; }
note() { "$repo/.venv/bin/python" -c 'import sys; sys.path.insert(0, "tests/gpu"); import summary
summary.record(*sys.argv[1:4], ok={"1": True, "0": False}.get(sys.argv[4]))' "$@"; }

if [[ -n ${BUNDLE:-} ]]; then
  step "unpacking the node bundle $BUNDLE"
  envfile=$(scripts/node-bundle.sh unpack "$BUNDLE") || exit 1
  # shellcheck disable=SC1090
  source "$envfile"
fi

step "set-up"
make venv ${PYTHON:+PYTHON="$PYTHON"} || exit 1
PY=$repo/.venv/bin/python
gpu_visible=0
if [[ $TIER_DEVICE != cpu ]] && "$PY" -c 'import sys; from transfer.caffe import gpu; sys.exit(0 if gpu.visible_gpus()[0] else 1)'; then
  gpu_visible=1
fi
start=$SECONDS
if [[ $gpu_visible == 1 ]]; then
  archs=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | tr -d . | sort -un | paste -sd';')
  CAFFE_GPU=1 CAFFE_CUDNN=${CAFFE_CUDNN:-1} CAFFE_CUDA_ARCHS=$archs CAFFE_JOBS=${CAFFE_JOBS:-$(nproc)} make caffe ||
    { note build "CUDA build (archs $archs)" failed 0; failed+=(build); }
else
  make caffe || { note build "CPU build" failed 0; failed+=(build); }
fi
root=$(cat .venv/caffe-root 2>/dev/null || true)
if [[ -n $root && -f $root/build/build-seconds ]]; then
  note build "Caffe build ($("$PY" -c 'from transfer.caffe import gpu; print(gpu.current_build().describe())'))" \
    "$(cat "$root/build/build-seconds") s (cached: $((SECONDS - start)) s now)" 1
fi

if [[ -n $root ]]; then
  step "Caffe's own test suite"
  result=$(mktemp)
  # On a GPU node its GPU cases only (`make test` runs the CPU ones); CAFFE_GTEST_ONLY='*' runs all.
  # There as many compile units as the node's cores allow; elsewhere the units of `make caffe-gtest`,
  # whose cached binary it then is.
  only="" units=${CAFFE_GTEST_UNITS:-}
  if [[ $gpu_visible == 1 ]]; then
    only=${CAFFE_GTEST_ONLY:-'*/2.*:*/3.*:*GPU*:*CuDNN*'} units=${units:-8}
  fi
  CAFFE_GTEST_ONLY=$only CAFFE_GTEST_RESULT=$result CAFFE_JOBS=${CAFFE_JOBS:-$(nproc)} \
    CAFFE_GTEST_UNITS=$units PY=$PY scripts/caffe-gtest.sh "$root" || failed+=(gtest)
  if [[ -s $result ]]; then
    "$PY" - "$result" <<'EOF'
import json, sys
sys.path.insert(0, "tests/gpu")
import summary
r = json.load(open(sys.argv[1]))
summary.record("gtest", f"Caffe's gtest suite ({r['build']})", f"{r['passed']} of {r['run']} passed, "
               f"{r['left_out']} left out, {r['seconds']} s", not r["failed"], ", ".join(r["failed"][:5]))
EOF
  fi
  rm -f "$result"
fi

step "tests/gpu"
TRANSFER_GPU_TIER_DEVICE=$TIER_DEVICE "$PY" -m pytest -q -rs tests/gpu || failed+=(tests)

step "CaffeNet benchmarks"
bench=$(mktemp)
if [[ $TIER_DEVICE == cpu ]]; then   # the code paths only: tiny batches, and 4 `caffe train` iterations,
  # as at batch 2 the synthetic CaffeNet diverges to NaN within some 12 (max pooling over NaN then corrupts
  # the heap, the base commit's build too: the patch series' max-pooling guard is the fix)
  "$PY" benchmarks/bench_gpu_caffenet.py --cpu --batch 4 --iterations 1 &&
    "$PY" benchmarks/bench_gpu.py --cpu --batch 2 --iterations 1 --nets 1,2 --train-iterations 4 --images 64 \
      --work "$bench.work" --summary-out "$bench" || failed+=(bench)
elif [[ $gpu_visible == 1 ]]; then
  "$PY" benchmarks/bench_gpu_caffenet.py --gpu 0 --write &&
    "$PY" benchmarks/bench_gpu.py --gpu 0 --write --summary-out "$bench" || failed+=(bench)
else
  echo "test-gpu: no GPU visible: CaffeNet timing skipped"
fi
if [[ -s $bench ]]; then
  "$PY" - "$bench" <<'EOF'
import json, sys
sys.path.insert(0, "tests/gpu")
import summary
b = json.load(open(sys.argv[1]))
for precision, ms in b["ms"].items():
    summary.record("speed", f"CaffeNet batch {b['batch']}, `caffe time`, {precision}", f"{ms:.1f} ms/iteration", None,
                   b["where"])
if b.get("train"):
    t = b["train"]
    summary.record("speed", f"`caffe train` from an LMDB, batch {b['batch']}", f"{t['ms']:.1f} ms/iteration", None,
                   f"waited for data in {t['waited_batches']} batches ({t['waited_ms']:.0f} ms)")
EOF
fi
rm -rf "$bench" "$bench.work"

"$PY" scripts/gpu_tier_summary.py "$summary" "${failed[*]:-}"
rc=$?
rm -f "$summary"
[[ ${#failed[@]} -eq 0 && $rc == 0 ]]
