#!/usr/bin/env bash
# A CUDA toolkit from PyPI wheels (nvcc, cudart, cuBLAS, cuRAND, CCCL; cuDNN optional), installed
# into the cache without root and without a system CUDA. Prints the toolkit root (its bin/nvcc) on
# the last line of stdout; with cuDNN, also "cudnn=<dir>" before it. scripts/build-caffe.sh runs it.
#
#   cuda-pypi.sh PYTHON [cudnn]
#
# Versions are pinned (CUDA 13.0, the oldest CUDA 13: a 13.0 driver runs it) so every machine builds
# the same toolkit; each package set lands in <cache>/cuda-pypi/<key>, key = hash of the pins.
# Linking needs no GPU and no driver: libcudart loads libcuda only when a program runs.
set -euo pipefail

PY=${1:?usage: cuda-pypi.sh PYTHON [cudnn]}
WANT_CUDNN=${2:-}
CACHE=${TRANSFER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/transfer}

# nvcc's own parts (crt, nvvm) are pinned too: nvcc's wheel asks for them unpinned.
PINS=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
      nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
      nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35)
[[ $WANT_CUDNN == cudnn ]] && PINS+=(nvidia-cudnn-cu13==9.13.0.50)

say() { echo "cuda-pypi: $*" >&2; }
die() { echo "cuda-pypi: error: $*" >&2; exit 1; }

key=$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-16)
dir=$CACHE/cuda-pypi/$key
mkdir -p "$CACHE/cuda-pypi"
exec 8>"$dir.lock"
flock 8

if [[ ! -f $dir/.complete ]]; then
  rm -rf "$dir.partial" "$dir"
  say "installing the CUDA toolkit from PyPI into $dir (about 1 GB${WANT_CUDNN:+, plus cuDNN 0.9 GB})"
  "$PY" -m pip install -q --no-deps --disable-pip-version-check --target "$dir.partial" "${PINS[@]}" \
      2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2) ||
    die "pip install ${PINS[*]} failed (no network, or no PyPI reachable: use a system CUDA, CAFFE_CUDA=system)"
  # The wheels ship only versioned libraries; the linker looks for the plain names.
  for lib in "$dir.partial"/nvidia/cu13/lib/lib*.so.* "$dir.partial"/nvidia/cudnn/lib/libcudnn*.so.*; do
    [[ -e $lib ]] || continue
    plain=${lib%.so.*}.so
    [[ -e $plain ]] || ln -s "$(basename "$lib")" "$plain"
  done
  # nvcc links with <root>/lib64 (the layout of a system CUDA); the wheels use lib.
  ln -s lib "$dir.partial/nvidia/cu13/lib64"
  chmod +x "$dir.partial"/nvidia/cu13/bin/* "$dir.partial"/nvidia/cu13/nvvm/bin/* 2>/dev/null || true
  "$dir.partial/nvidia/cu13/bin/nvcc" --version >/dev/null || die "the installed nvcc does not run"
  printf '%s\n' "${PINS[@]}" >"$dir.partial/PINS"
  touch "$dir.partial/.complete"
  mv -T "$dir.partial" "$dir"
fi
if [[ $WANT_CUDNN == cudnn ]]; then echo "cudnn=$dir/nvidia/cudnn"; fi
echo "$dir/nvidia/cu13"
