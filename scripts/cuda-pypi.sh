#!/usr/bin/env bash
# A CUDA toolkit from PyPI wheels (nvcc, cudart, cuBLAS, cuRAND, CCCL; cuDNN optional), installed
# into the cache without root and without a system CUDA. Prints the toolkit root (its bin/nvcc) on
# the last line of stdout; with cuDNN, also "cudnn=<dir>" before it. scripts/build-caffe.sh runs it.
#
#   cuda-pypi.sh PYTHON [cudnn]
#   cuda-pypi.sh --pins [cudnn]     print the pinned requirements only (scripts/node-bundle.sh)
#
# Versions are pinned (CUDA 13.0, the oldest CUDA 13: a 13.0 driver runs it) so every machine builds
# the same toolkit; each package set lands in <cache>/cuda-pypi/<key>, key = hash of the pins.
# Linking needs no GPU and no driver: libcudart loads libcuda only when a program runs.
set -euo pipefail

PY=${1:?usage: cuda-pypi.sh PYTHON [cudnn] | --pins [cudnn]}
WANT_CUDNN=${2:-}
CACHE=${TRANSFER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/transfer}

# nvcc's own parts (crt, nvvm) are pinned too: nvcc's wheel asks for them unpinned. cuDNN comes with
# NVRTC: cuDNN 9 compiles some of its engines at run time and, without libnvrtc, silently has fewer.
CUDNN_VERSION=9.13.0
PINS=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
      nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
      nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35)
[[ $WANT_CUDNN == cudnn ]] && PINS+=(nvidia-cudnn-cu13==$CUDNN_VERSION.50 nvidia-cuda-nvrtc==13.0.88)
# What is done to the installed files below; a change makes a new toolkit directory.
LAYOUT="layout=2 rpath+cudnn-names+nvrtc-links"
if [[ $PY == --pins ]]; then printf '%s\n' "${PINS[@]}"; exit 0; fi

say() { echo "cuda-pypi: $*" >&2; }
die() { echo "cuda-pypi: error: $*" >&2; exit 1; }

# cuDNN 9's libcudnn.so.9 opens its sub-libraries at run time, trying libcudnn_ops.so.9.13.0, then
# .so.9.13, then .so.9; the wheel ships only .so.9, so the first names would be looked up elsewhere
# (LD_LIBRARY_PATH, the system) first: all three names are made here. Its engines open libnvrtc,
# which the CUDA 13 wheels put in cu13/lib, where cuDNN's own search path does not look.
cudnn_layout() {
  local nv=$1 lib name
  for lib in "$nv"/cudnn/lib/libcudnn*.so.9; do
    name=${lib%.so.9}
    ln -s "$(basename "$lib")" "$name.so.$CUDNN_VERSION"
    ln -s "$(basename "$lib")" "$name.so.${CUDNN_VERSION%.*}"
  done
  for lib in "$nv"/cu13/lib/libnvrtc*.so*; do
    [[ -e $lib ]] && ln -sf "../../cu13/lib/$(basename "$lib")" "$nv/cudnn/lib/$(basename "$lib")"
  done
  [[ -e $nv/cudnn/lib/libnvrtc.so.13 ]] || die "nvidia-cuda-nvrtc did not install libnvrtc.so.13 in $nv/cu13/lib"
}

key=$(printf '%s\n' "${PINS[@]}" "$LAYOUT" | sha256sum | cut -c1-16)
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
  if [[ $WANT_CUDNN == cudnn ]]; then cudnn_layout "$dir.partial/nvidia"; fi
  # The libraries find each other through a RUNPATH of $ORIGIN, searched after LD_LIBRARY_PATH: as a
  # DT_RPATH it comes first, and another CUDA or cuDNN on LD_LIBRARY_PATH cannot stand in.
  "$PY" "$(dirname "$0")/elf_rpath.py" "$dir.partial"/nvidia/cu13/lib/lib*.so.* \
      $(compgen -G "$dir.partial/nvidia/cudnn/lib/lib*.so.?" || true) >/dev/null ||
    die "could not set the rpaths of the CUDA libraries in $dir.partial"
  chmod +x "$dir.partial"/nvidia/cu13/bin/* "$dir.partial"/nvidia/cu13/nvvm/bin/* 2>/dev/null || true
  "$dir.partial/nvidia/cu13/bin/nvcc" --version >/dev/null || die "the installed nvcc does not run"
  printf '%s\n' "${PINS[@]}" >"$dir.partial/PINS"
  touch "$dir.partial/.complete"
  mv -T "$dir.partial" "$dir"
fi
if [[ $WANT_CUDNN == cudnn ]]; then echo "cudnn=$dir/nvidia/cudnn"; fi
echo "$dir/nvidia/cu13"
