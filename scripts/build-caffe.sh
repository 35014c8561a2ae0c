#!/usr/bin/env bash
# Build (or find) the Caffe this project uses and record it in the venv.  `make caffe` runs this.
#
#   (default)              fetch the PyPI sdist brocolli-caffe==9.0.2 (sha256-checked) and build it
#   CAFFE_SRC=/tree        build that BVLC-layout tree instead (the tree itself is not modified)
#   CAFFE_ROOT=/build      build nothing; use an existing build (build/tools/caffe, python/caffe)
#   CAFFE_GPU=1            CUDA build (CPU_ONLY otherwise); with it:
#     CAFFE_CUDA=auto      nvcc on PATH, in $CUDA_HOME or /usr/local/cuda, else the PyPI toolkit
#     CAFFE_CUDA=system    that nvcc only;  CAFFE_CUDA=pypi: the PyPI toolkit (scripts/cuda-pypi.sh)
#     CAFFE_CUDNN=auto     cuDNN if found (with the PyPI toolkit: its wheel); 1 requires it, 0 omits it
#     CAFFE_CUDA_ARCHS="75;80;86;89;90"  SM versions (real code each, PTX of the newest)
#     CAFFE_CUDA_UNITY=N   compile the .cu files as N combined units (scripts/cuda_unity.py; a fast
#                          compile-and-link check, what `make check-gpu-build` uses); 0 (default): one by one
#   CAFFE_PYTHON=0         no pycaffe (the `caffe` binary and tools only)
#   CAFFE_RECORD=0         build (or find) it in the cache but do not record it in the venv
#   CAFFE_ROOT_OUT=FILE    also write the root of the build (cached or new) into FILE
#   TRANSFER_CACHE=/dir    cache directory (default ${XDG_CACHE_HOME:-~/.cache}/transfer)
#   CAFFE_JOBS=N           parallel compile jobs (default 2)
#   CAFFE_CMAKE_ARGS="..." extra cmake -D options (e.g. -DCUDA_cublas_LIBRARY=...); part of the cache key
#
# Builds land in <cache>/caffe/<key>, key = hash of source, options and our build files, so a
# second run is a no-op. A build happens in <key>.partial and is renamed into place only when
# complete, so an interrupted build never looks like a finished one.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
VENV=$(cd "${VENV:-$repo/.venv}" 2>/dev/null && pwd) || { echo "caffe: error: no venv at ${VENV:-$repo/.venv}; run make venv" >&2; exit 1; }
PY=${PY:-$VENV/bin/python}
[[ $PY == /* ]] || PY=$repo/$PY
CACHE=${TRANSFER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/transfer}
JOBS=${CAFFE_JOBS:-2}
GPU=${CAFFE_GPU:-0}
CUDA_KIND=${CAFFE_CUDA:-auto}
CUDNN=${CAFFE_CUDNN:-auto}
ARCHS=${CAFFE_CUDA_ARCHS:-75;80;86;89;90}
UNITY=${CAFFE_CUDA_UNITY:-0}
PYTHON=${CAFFE_PYTHON:-1}
RECORD=${CAFFE_RECORD:-1}
SDIST_NAME=brocolli-caffe
SDIST_VERSION=9.0.2
SDIST_SHA256=c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a

say() { echo "caffe: $*"; }
die() { echo "caffe: error: $*" >&2; exit 1; }

[[ -x $PY ]] || die "no python at $PY; run make venv"
case $GPU in 0|1) ;; *) die "CAFFE_GPU='$GPU' must be 0 or 1" ;; esac
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "CAFFE_JOBS='$JOBS' must be a positive integer"
case $CUDA_KIND in auto|system|pypi) ;; *) die "CAFFE_CUDA='$CUDA_KIND' must be auto, system or pypi" ;; esac
case $CUDNN in auto|0|1) ;; *) die "CAFFE_CUDNN='$CUDNN' must be auto, 0 or 1" ;; esac
[[ $ARCHS =~ ^[0-9]+(\;[0-9]+)*$ ]] || die "CAFFE_CUDA_ARCHS='$ARCHS' must be SM numbers separated by ';' (e.g. 75;90)"
case $PYTHON in 0|1) ;; *) die "CAFFE_PYTHON='$PYTHON' must be 0 or 1" ;; esac
[[ $UNITY =~ ^[0-9]+$ ]] || die "CAFFE_CUDA_UNITY='$UNITY' must be a number of units (0: none)"
case $RECORD in 0|1) ;; *) die "CAFFE_RECORD='$RECORD' must be 0 or 1" ;; esac

# Write "$2" into file "$1" atomically (temp + rename in the same directory).
write_atomic() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  printf '%s\n' "$2" >"$tmp"
  chmod 644 "$tmp"
  mv -f "$tmp" "$1"
}

# Point the venv at a Caffe root: <venv>/caffe-root for transfer.caffe.env, caffe.pth for `import caffe`.
record() {
  local root=$1 site
  [[ -z ${CAFFE_ROOT_OUT:-} ]] || write_atomic "$CAFFE_ROOT_OUT" "$root"
  if [[ $RECORD == 0 ]]; then say "not recorded in the venv (CAFFE_RECORD=0): $root"; return; fi
  site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  write_atomic "$VENV/caffe-root" "$root"
  write_atomic "$site/caffe.pth" "$root/python"
  say "recorded $root in $VENV/caffe-root and $site/caffe.pth"
}

# ---- an existing build: check its layout, record it, done ---------------------------------------
if [[ -n ${CAFFE_ROOT:-} ]]; then
  [[ -d $CAFFE_ROOT ]] || die "CAFFE_ROOT=$CAFFE_ROOT is not a directory"
  root=$(cd "$CAFFE_ROOT" && pwd)
  [[ -x $root/build/tools/caffe || -x $root/bin/caffe ]] ||
    die "CAFFE_ROOT=$root has no build/tools/caffe (expected the layout of a BVLC Makefile build)"
  # Training needs only the binary and caffe_pb2.py; surgery needs pycaffe, which may be built elsewhere.
  [[ -f $root/python/caffe/proto/caffe_pb2.py ]] ||
    die "CAFFE_ROOT=$root has no python/caffe/proto/caffe_pb2.py (build its pycaffe or proto target)"
  compgen -G "$root/python/caffe/_caffe*.so" >/dev/null ||
    say "note: $root has no pycaffe (_caffe.so): training works, surgery must run where pycaffe loads"
  say "using external Caffe at $root (nothing built)"
  record "$root"
  exit 0
fi

mkdir -p "$CACHE/caffe" "$CACHE/sources"

# ---- the source: a tree given by CAFFE_SRC, or the checked sdist ---------------------------------
if [[ -n ${CAFFE_SRC:-} ]]; then
  [[ -f $CAFFE_SRC/src/caffe/proto/caffe.proto ]] ||
    die "CAFFE_SRC=$CAFFE_SRC is not a Caffe source tree (no src/caffe/proto/caffe.proto)"
  src=$(cd "$CAFFE_SRC" && pwd)
  # Content hash of what gets compiled, so an edited tree gets a new cache entry.
  src_sha=$(cd "$src" && find include src tools python -type f \
              \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \
                 -o -name '*.proto' -o -name '*.py' \) -not -path '*/test/*' -print0 |
            LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)
  src_desc="tree $src"
else
  tarball=$CACHE/sources/$SDIST_NAME-$SDIST_VERSION.tar.gz
  if [[ ! -f $tarball ]] || [[ $(sha256sum "$tarball" | cut -c1-64) != "$SDIST_SHA256" ]]; then
    say "downloading $SDIST_NAME==$SDIST_VERSION (sdist) from PyPI"
    dl=$(mktemp -d "$CACHE/sources/dl.XXXXXX")
    "$PY" -m pip download -q --no-deps --no-binary :all: -d "$dl" "$SDIST_NAME==$SDIST_VERSION" 2>"$dl/pip.log" ||
      { cat "$dl/pip.log" >&2; die "pip download $SDIST_NAME==$SDIST_VERSION failed"; }
    got=$(sha256sum "$dl/$SDIST_NAME-$SDIST_VERSION.tar.gz" | cut -c1-64)
    [[ $got == "$SDIST_SHA256" ]] ||
      die "sha256 mismatch for $SDIST_NAME-$SDIST_VERSION.tar.gz: got $got, want $SDIST_SHA256 (left in $dl)"
    mv -f "$dl/$SDIST_NAME-$SDIST_VERSION.tar.gz" "$tarball"
    rm -rf "$dl"
  fi
  src_sha=$SDIST_SHA256
  src_desc="pypi $SDIST_NAME==$SDIST_VERSION"
fi

# ---- cache key: source + options + our build files ------------------------------------------------
pyver=$("$PY" -c 'import sys, numpy; print("%d.%d numpy%s" % (sys.version_info[:2] + (numpy.__version__.split(".")[0],)))') ||
  die "$PY cannot import numpy (pycaffe is compiled against it); run make venv"
read -r -a cmake_extra <<<"${CAFFE_CMAKE_ARGS:-}"
[[ $PYTHON == 1 ]] || pyver=none
cuda_args=()
if [[ $GPU == 1 ]]; then
  # The toolkit: a system nvcc unless none is found or the PyPI one is asked for.
  nvcc=""
  if [[ $CUDA_KIND != pypi ]]; then
    for cand in "$(command -v nvcc || true)" "${CUDA_HOME:+$CUDA_HOME/bin/nvcc}" /usr/local/cuda/bin/nvcc; do
      if [[ -n $cand && -x $cand ]]; then nvcc=$cand; break; fi
    done
    [[ -n $nvcc || $CUDA_KIND == auto ]] ||
      die "CAFFE_CUDA=system but no nvcc on PATH, in CUDA_HOME or /usr/local/cuda (CAFFE_CUDA=pypi needs none)"
  fi
  if [[ -z $nvcc ]]; then
    CUDA_KIND=pypi
    want=""; [[ $CUDNN == 0 ]] || want=cudnn
    mapfile -t tk < <("$repo/scripts/cuda-pypi.sh" "$PY" $want)
    [[ ${#tk[@]} -gt 0 && -x ${tk[-1]}/bin/nvcc ]] || die "the PyPI CUDA toolkit could not be installed (see above)"
    nvcc=${tk[-1]}/bin/nvcc
    for line in "${tk[@]}"; do [[ $line == cudnn=* ]] && export CUDNN_ROOT=${line#cudnn=}; done
  else
    CUDA_KIND=system
  fi
  nvcc=$(realpath "$nvcc")
  nvcc_ver=$("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
  [[ -n $nvcc_ver ]] || die "$nvcc --version does not say its release"
  case $CUDNN in auto) cudnn_opt=AUTO ;; 1) cudnn_opt=ON ;; 0) cudnn_opt=OFF ;; esac
  cuda_args=(-DCMAKE_CUDA_COMPILER="$nvcc" -DCAFFE_CUDNN=$cudnn_opt -DCAFFE_CUDA_ARCHS="$ARCHS")
  gpu_opts=" cuda=$CUDA_KIND:$nvcc:$nvcc_ver cudnn=$CUDNN${CUDNN_ROOT:+:$CUDNN_ROOT} archs=$ARCHS"
  if [[ $UNITY != 0 ]]; then   # the units are part of what is compiled
    gpu_opts+=" unity=$UNITY:$(sha256sum "$repo/scripts/cuda_unity.py" | cut -c1-16)"
  fi
  say "CUDA $nvcc_ver from $nvcc ($CUDA_KIND), cuDNN $CUDNN, archs $ARCHS"
fi
options="gpu=$GPU python=$pyver${CAFFE_CMAKE_ARGS:+ cmake=$CAFFE_CMAKE_ARGS}${gpu_opts:-}"
# Our CMake files, the patch series (caffe/patches), its applier and the files it installs decide the
# result; this driver script does not. Names count too: a renamed or reordered patch is a new build.
ours=$(cd "$repo/caffe" && find . -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z |
       xargs -0 sha256sum | sha256sum | cut -c1-64)
# The system libraries it links: after an upgrade of one of these, a cached build may no longer load.
system=$(dpkg-query -W -f='${Package}=${Version}\n' libprotobuf-dev libboost-python-dev libgoogle-glog-dev \
         libgflags-dev libhdf5-dev liblmdb-dev libopenblas-dev 2>/dev/null | LC_ALL=C sort | tr '\n' ' ')
key=$(printf '%s\n' "$src_sha" "$options" "$ours" "$system" | sha256sum | cut -c1-16)
root=$CACHE/caffe/$key

# One build per key at a time: parallel `make test` runs wait for the first one.
exec 9>"$root.lock"
if ! flock -n 9; then
  say "another build of $key is running; waiting for it"
  flock 9
fi

if [[ -f $root/.complete ]]; then
  say "cached build $root"
  record "$root"
  exit 0
fi

# ---- build -----------------------------------------------------------------------------------------
tmp=$root.partial
logf=$CACHE/caffe/$key.log
rm -rf "$tmp" "$root"   # leftovers of an interrupted build
mkdir -p "$tmp"
: >"$logf"
trap 'echo "caffe: error: build step failed; log: $logf" >&2' ERR
trap 'echo "caffe: interrupted; $tmp is removed by the next run" >&2; exit 130' INT TERM
say "building Caffe ($src_desc, $options) with $JOBS jobs; log: $logf"
start=$SECONDS

if [[ -n ${CAFFE_SRC:-} ]]; then
  for d in include src tools python cmake LICENSE; do
    if [[ -e $src/$d ]]; then cp -a "$src/$d" "$tmp/"; fi
  done
else
  tar -xzf "$tarball" -C "$tmp" --strip-components=1 --no-same-owner   # as root in a user namespace too
fi
find "$tmp/python" -name __pycache__ -type d -prune -exec rm -rf {} +
rm -rf "$tmp/build"
# Generated by an older protoc than the system's; the build regenerates them from caffe.proto.
rm -f "$tmp/include/caffe/proto/caffe.pb.h" "$tmp/src/caffe/proto/caffe.pb.cc"

# The patch series, in order; any hunk that does not apply stops the build here, before cmake, naming
# the patch and the hunk. A foreign tree (CAFFE_SRC) may lack the patches marked optional: each one
# applies whole or is listed as not applied, here and in BUILD_INFO.
say "applying the patch series (caffe/patches)"
mkdir -p "$tmp/.cmake"
patch_args=(--record "$tmp/.cmake/patches.json")
[[ -z ${CAFFE_SRC:-} ]] || patch_args+=(--foreign)
[[ $GPU == 0 ]] || patch_args+=(--gpu)
"$PY" "$repo/caffe/apply_patches.py" "$tmp" "${patch_args[@]}" 2>&1 | tee -a "$logf" ||
  die "the patch series does not apply (see above); nothing was compiled; log: $logf"
if [[ $GPU == 1 && $UNITY != 0 ]]; then
  say "combining the .cu files into $UNITY compile unit(s) (CAFFE_CUDA_UNITY)"
  "$PY" "$repo/scripts/cuda_unity.py" "$tmp" "$UNITY" | tee -a "$logf"
fi

say "configuring (cmake)"
cmake -S "$repo/caffe" -B "$tmp/.cmake" -DCAFFE_SRC="$tmp" -DCAFFE_GPU="$GPU" -DCAFFE_CACHE="$(realpath "$CACHE")" \
      -DPython3_EXECUTABLE="$PY" -DCAFFE_PYTHON=$([[ $PYTHON == 1 ]] && echo ON || echo OFF) \
      "${cuda_args[@]}" "${cmake_extra[@]}" >>"$logf" 2>&1 ||
  { tail -n 20 "$logf" >&2; die "cmake configure failed; full log: $logf"; }

say "compiling (a few minutes on 2 cores; progress every 10%)"
cmake --build "$tmp/.cmake" -j "$JOBS" 2>&1 | tee -a "$logf" |
  awk 'match($0, /^\[ *([0-9]+)%\]/) { p = substr($0, RSTART + 1, RLENGTH - 3) + 0;
         if (p >= last + 10) { last = p - p % 10; printf "caffe:   %d%%\n", p; fflush() } }' ||
  { grep -E -m 20 'error|Error' "$logf" >&2 || true; die "compile failed; full log: $logf"; }

want=(build/lib/libcaffe.so build/tools/caffe build/tools/upgrade_net_proto_text build/tools/upgrade_solver_proto_text
      python/caffe/proto/caffe_pb2.py)
[[ $PYTHON == 0 ]] || want+=(python/caffe/_caffe.so)
for f in "${want[@]}"; do
  [[ -e $tmp/$f ]] || die "build finished but $f is missing; log: $logf"
done
GLOG_minloglevel=2 "$tmp/build/tools/caffe" --version >>"$logf" 2>&1 ||
  die "the new build/tools/caffe does not run; log: $logf"

"$PY" - "$tmp/BUILD_INFO" "$src_desc" "$src_sha" "$GPU" "$pyver" "$key" "$tmp/.cmake/cuda_info.json" \
  "$CUDA_KIND" "$tmp/.cmake/patches.json" <<'EOF'
import datetime, json, os, sys
path, source, sha, gpu, pyver, key, cuda_info, cuda_kind, patches = sys.argv[1:]
info = {"source": source, "sha256": sha, "options": {"gpu": gpu == "1", "python": pyver},
        "key": key, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
with open(patches) as f:  # the series as applied (caffe/apply_patches.py --record)
    info["patches"] = json.load(f)
if gpu == "1":  # CUDA and cuDNN versions and the architectures, as configured (caffe/cuda.cmake)
    with open(cuda_info) as f:
        cuda = json.load(f)
    info["cuda"] = {"toolkit": cuda_kind, "version": cuda["cuda"], "nvcc": cuda["nvcc"],
                    "cudnn": cuda["cudnn"] or None, "archs": cuda["archs"].split(";")}
with open(path + ".tmp", "w") as f:
    json.dump(info, f, indent=1)
os.replace(path + ".tmp", path)
EOF
rm -rf "$tmp/.cmake"          # object files: not needed once linked
cp "$logf" "$tmp/build/build.log"
echo "$((SECONDS - start))" >"$tmp/build/build-seconds"   # for the GPU tier's summary
[[ $GPU == 0 ]] || say "linked $("$PY" -c 'import json, sys; c = json.load(open(sys.argv[1]))["cuda"]
print("CUDA %s, cuDNN %s" % (c["version"], c["cudnn"] or "none"))' "$tmp/BUILD_INFO")"
touch "$tmp/.complete"
mv -T "$tmp" "$root"          # atomic: the entry appears complete or not at all
trap - ERR INT TERM
say "built in $((SECONDS - start)) s: $root"
record "$root"
