#!/usr/bin/env bash
# Caffe's own gtest suite (src/caffe/test of the tree) against a build of scripts/build-caffe.sh: compiled
# once per key into the cache, then run. `make caffe-gtest` runs it on the venv's Caffe (the CPU build,
# by `make test`); `make test-gpu` on the CUDA build, whose binary holds the GPU cases as well (cuDNN
# convolution, LRN and pooling gradient checks among them).
#
#   caffe-gtest.sh ROOT [--build-only]
#   CAFFE_JOBS=N              parallel compile jobs (default 2)
#   CAFFE_GTEST_UNITS=N       test files compiled as N combined units (default 4; tests/gtest/tests.cmake)
#   CAFFE_GTEST_RESULT=FILE   also write the counts as JSON (the GPU tier's summary reads it)
#   CAFFE_GTEST_ONLY=PATTERNS run only these gtest patterns (':'-separated; default all), e.g. the GPU
#                             cases: '*/2.*:*/3.*:*GPU*:*CuDNN*' (a MultiDeviceTest's 3rd and 4th types)
#   CAFFE_CMAKE_ARGS="..."    the extra cmake options the library was built with (e.g. a node bundle's prefix)
#
# The binary lands in <cache>/caffe-gtest/<key>/test_all, key = the library's key, the CMake files and
# tests/gtest/*; it is built in <key>.partial and renamed into place when complete, like the library.
# Tests left out, each with its reason, are in tests/gtest/exclusions.txt. The suite runs in ROOT (its
# tests read src/caffe/test/test_data there) and prints how many ran, passed and failed, the failures,
# and what was left out; exit 1 on any failure or when nothing ran.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${1:?usage: caffe-gtest.sh ROOT [--build-only]}
BUILD_ONLY=${2:-}
CACHE=${TRANSFER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/transfer}
JOBS=${CAFFE_JOBS:-2}
UNITS=${CAFFE_GTEST_UNITS:-4}
PY=${PY:-python3}
say() { echo "caffe-gtest: $*"; }
die() { echo "caffe-gtest: error: $*" >&2; exit 1; }

ROOT=$(cd "$ROOT" 2>/dev/null && pwd) || die "$1 is not a directory"
[[ -f $ROOT/BUILD_INFO && -f $ROOT/build/lib/libcaffe.so ]] ||
  die "$ROOT is not a build of scripts/build-caffe.sh (no BUILD_INFO or build/lib/libcaffe.so)"
[[ -d $ROOT/src/caffe/test && -f $ROOT/src/gtest/gtest-all.cpp ]] || die "$ROOT carries no Caffe tests (src/caffe/test)"
[[ $UNITS =~ ^[1-9][0-9]*$ ]] || die "CAFFE_GTEST_UNITS='$UNITS' must be a positive number"
case $BUILD_ONLY in ""|--build-only) ;; *) die "unknown option '$BUILD_ONLY'" ;; esac

# What the library was built with, from its BUILD_INFO: key, GPU, nvcc, cuDNN, architectures.
mapfile -t info < <("$PY" - "$ROOT/BUILD_INFO" <<'EOF'
import json, sys
i = json.load(open(sys.argv[1]))
c = i.get("cuda") or {}
archs = sorted({a.split("-")[0] for a in c.get("archs") or []}, key=int)
print(i["key"]); print(1 if i["options"]["gpu"] else 0); print(c.get("nvcc") or "")
print("ON" if c.get("cudnn") else "OFF"); print(";".join(archs))
EOF
)
[[ ${#info[@]} -eq 5 ]] || die "cannot read $ROOT/BUILD_INFO"
lib_key=${info[0]} gpu=${info[1]} nvcc=${info[2]} cudnn=${info[3]} archs=${info[4]}
ours=$(cat "$repo/caffe/CMakeLists.txt" "$repo/caffe/cuda.cmake" "$repo"/tests/gtest/* | sha256sum | cut -c1-64)
key=$(printf '%s\n' "$lib_key" "$ours" "units=$UNITS" "${CAFFE_CMAKE_ARGS:-}" | sha256sum | cut -c1-16)
dir=$CACHE/caffe-gtest/$key
mkdir -p "$CACHE/caffe-gtest"
exec 9>"$dir.lock"
flock 9

if [[ ! -f $dir/.complete ]]; then
  cuda_args=()
  if [[ $gpu == 1 ]]; then
    [[ -x $nvcc ]] || die "the nvcc this build used ($nvcc) is gone: rebuild the library (make caffe)"
    tk=$(dirname "$(dirname "$nvcc")")
    if [[ -d $tk/../cudnn ]]; then export CUDNN_ROOT=$(cd "$tk/../cudnn" && pwd); fi
    cuda_args=(-DCMAKE_CUDA_COMPILER="$nvcc" -DCAFFE_CUDNN="$cudnn" -DCAFFE_CUDA_ARCHS="$archs")
  fi
  read -r -a extra <<<"${CAFFE_CMAKE_ARGS:-}"
  rm -rf "$dir.partial" "$dir"
  mkdir -p "$dir.partial"
  log=$dir.partial/build.log
  say "building Caffe's test suite for $(basename "$ROOT") ($([[ $gpu == 1 ]] && echo "CUDA, cuDNN $cudnn" || echo CPU),"\
      "$UNITS units, $JOBS jobs); log: $log"
  start=$SECONDS
  cmake -S "$repo/caffe" -B "$dir.partial/.cmake" -DCAFFE_SRC="$ROOT" -DCAFFE_GPU="$gpu" -DCAFFE_PYTHON=OFF \
        -DCAFFE_CACHE="$(realpath "$CACHE")" -DCAFFE_GTEST="$repo/tests/gtest/tests.cmake" \
        -DCAFFE_GTEST_OUT="$dir.partial" -DCAFFE_GTEST_UNITS="$UNITS" "${cuda_args[@]}" "${extra[@]}" \
        >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "cmake configure failed; log: $log"; }
  cmake --build "$dir.partial/.cmake" -j "$JOBS" >>"$log" 2>&1 ||
    { grep -E -m 20 'error' "$log" >&2 || true; die "compiling the test suite failed; log: $log"; }
  [[ -x $dir.partial/test_all ]] || die "built, but $dir.partial/test_all is missing; log: $log"
  rm -rf "$dir.partial/.cmake"
  echo "$((SECONDS - start))" >"$dir.partial/build-seconds"
  touch "$dir.partial/.complete"
  mv -T "$dir.partial" "$dir"
  say "built in $((SECONDS - start)) s: $dir/test_all"
else
  say "cached test suite $dir/test_all (built in $(cat "$dir/build-seconds" 2>/dev/null || echo '?') s)"
fi
[[ -z $BUILD_ONLY ]] || exit 0

# The `test` lines of the exclusions (and the `cpu` ones for a CPU-only build), as one negative filter.
kinds='\(test\)'
[[ $gpu == 1 ]] || kinds='\(test\|cpu\)'
mapfile -t skip < <(sed -n "s/^$kinds  *\([^ ]*\).*/\2/p" "$repo/tests/gtest/exclusions.txt")
filter="${CAFFE_GTEST_ONLY:-*}-$(IFS=:; echo "${skip[*]:-NONE}")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: >"$work/left_out.txt"
if [[ ${#skip[@]} -gt 0 ]]; then
  (cd "$ROOT" && "$dir/test_all" --gtest_list_tests --gtest_filter="$(IFS=:; echo "${skip[*]}")" >"$work/left_out.txt" 2>/dev/null)
fi
start=$SECONDS
set +e
(cd "$ROOT" && GLOG_minloglevel=1 "$dir/test_all" --gtest_filter="$filter" --gtest_output="xml:$work/report.xml" \
   >"$work/run.log" 2>&1)
rc=$?
set -e
"$PY" "$repo/scripts/gtest_report.py" --xml "$work/report.xml" --log "$work/run.log" --exit "$rc" \
  --seconds "$((SECONDS - start))" --left-out "$work/left_out.txt" --exclusions "$repo/tests/gtest/exclusions.txt" \
  --build "$(basename "$ROOT")" --kinds "$([[ $gpu == 1 ]] && echo file,test || echo file,test,cpu)" \
  ${CAFFE_GTEST_RESULT:+--json "$CAFFE_GTEST_RESULT"}
