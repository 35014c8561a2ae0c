#!/usr/bin/env bash
# Build Caffe's own convert_imageset, the yardstick of benchmarks/bench_datasets.py, and print its path.
#
#   scripts/build-convert-imageset.sh          (make bench-tools: installs its Debian packages first)
#
# The project's Caffe is built without OpenCV (nothing in the pipeline needs it), so this compiles the
# recorded Caffe tree's tools/convert_imageset.cpp and src/caffe/util/io.cpp with USE_OPENCV against
# Debian's OpenCV 4 (scripts/apt-packages-bench.txt) and links the rest from its libcaffe. OpenCV 4
# dropped highgui's image functions and the CV_LOAD_IMAGE_* names that 2014's io.cpp uses: a two-line
# shim maps them to imgcodecs. Cached by the tree and OpenCV version under <cache>/tools/.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$repo/.venv}
CACHE=${TRANSFER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/transfer}
die() { echo "convert_imageset: error: $*" >&2; exit 1; }

[[ -f $VENV/caffe-root ]] || die "no Caffe recorded in $VENV (run make setup)"
root=$(cat "$VENV/caffe-root")
[[ -f $root/tools/convert_imageset.cpp && -f $root/build/lib/libcaffe.so ]] ||
  die "$root has no tools/convert_imageset.cpp or build/lib/libcaffe.so"
# Debian's component packages ship no opencv4.pc (only libopencv-dev, which pulls in all of OpenCV).
opencv=$(dpkg-query -W -f='${Version}' libopencv-imgcodecs-dev 2>/dev/null) && [[ -d /usr/include/opencv4 ]] ||
  die "OpenCV 4 development files are missing (make bench-tools installs scripts/apt-packages-bench.txt)"
key=$(printf '%s\n' "$root" "$opencv" "$(sha256sum "$0")" | sha256sum | cut -c1-16)
out=$CACHE/tools/convert_imageset-$key
if [[ -x $out ]]; then echo "$out"; exit 0; fi

mkdir -p "$CACHE/tools"
shim=$(mktemp -d)
trap 'rm -rf "$shim"' EXIT
mkdir -p "$shim/opencv2/highgui"
printf '#include <opencv2/imgcodecs.hpp>\n#include <opencv2/imgproc.hpp>\n' >"$shim/opencv2/highgui/highgui.hpp"
printf '#define CV_LOAD_IMAGE_COLOR cv::IMREAD_COLOR\n#define CV_LOAD_IMAGE_GRAYSCALE cv::IMREAD_GRAYSCALE\n' \
  >"$shim/opencv2/highgui/highgui_c.h"
echo "convert_imageset: compiling against $root and OpenCV $opencv" >&2
g++ -O2 -std=c++17 -DUSE_OPENCV -DUSE_LMDB -DCPU_ONLY -DBOOST_BIND_GLOBAL_PLACEHOLDERS -w -I"$shim" -I"$root/build/include" -I"$root/include" \
    -I/usr/include/hdf5/serial -I/usr/include/opencv4 \
    "$root/tools/convert_imageset.cpp" "$root/src/caffe/util/io.cpp" -o "$out.partial" \
    -L"$root/build/lib" -lcaffe -Wl,-rpath,"$root/build/lib" \
    -lopencv_imgcodecs -lopencv_imgproc -lopencv_core -lglog -lgflags -lprotobuf \
    -lboost_system -lboost_filesystem -llmdb -lpthread
mv -f "$out.partial" "$out"
echo "$out"
