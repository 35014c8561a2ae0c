#!/usr/bin/env bash
# A node bundle: what `make test-gpu` needs on a GPU node with no network and no root, in one archive
# made on a connected Debian 12 machine (`make node-bundle`).
#
#   node-bundle.sh make OUT [--no-cuda]   write the archive OUT and print its size; --no-cuda leaves
#                                         out the PyPI CUDA wheels (for a node whose own CUDA builds)
#   node-bundle.sh unpack ARCHIVE         unpack it into the cache (once per archive), check that this
#                                         machine can run it, and print the path of its env file, which
#                                         `make test-gpu BUNDLE=ARCHIVE` sources
#
# The archive is a tar of files compressed already:
#   MANIFEST.json  what is in it, and the newest glibc/libstdc++ symbol versions its libraries need
#   deps.tar.gz    the Debian packages of scripts/bundle-debs.txt and every library they need in turn
#                  (scripts/bundle_closure.py), unpacked with dpkg -x (no root) and pruned of documents
#                  and static libraries; python3.11, its modules and protoc get rpaths to the bundle's
#                  libraries, so nothing needs LD_LIBRARY_PATH (Caffe's own rpaths: caffe/CMakeLists.txt)
#   wheels/        requirements.txt with pip and setuptools, for that Python 3.11
#   cuda/          the pinned PyPI CUDA, cuDNN and NVRTC wheels (scripts/cuda-pypi.sh --pins cudnn)
#   sources/       the Caffe sdist, sha256-checked (scripts/build-caffe.sh's pin)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${TRANSFER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/transfer}
PY=${PY:-$repo/.venv/bin/python}
say() { echo "node-bundle: $*" >&2; }
die() { echo "node-bundle: error: $*" >&2; exit 1; }
sdist_pin() { sed -n "s/^$1=//p" "$repo/scripts/build-caffe.sh"; }

fetch_debs() {   # fetch_debs DEBS TREE PACKAGE...: download and unpack each
  local debs=$1 tree=$2 f
  shift 2
  (cd "$debs" && apt-get download "$@" >/dev/null 2>"$debs/apt.err") ||
    { cat "$debs/apt.err" >&2; die "apt-get download $* failed (is this a connected Debian 12 machine?)"; }
  for f in "$debs"/*.deb; do
    [[ -e $f.done ]] || { dpkg -x "$f" "$tree"; touch "$f.done"; }
  done
}

set_rpaths() {   # the bundle's own programs find the bundle's libraries
  local tree=$1 patchelf=$2 lib=usr/lib/x86_64-linux-gnu f
  "$patchelf" --force-rpath --set-rpath "\$ORIGIN/../lib/x86_64-linux-gnu" "$tree/usr/bin/python3.11"
  for f in "$tree"/usr/bin/protoc*; do
    [[ -f $f && ! -L $f ]] && "$patchelf" --force-rpath --set-rpath "\$ORIGIN/../lib/x86_64-linux-gnu" "$f"
  done
  for f in "$tree"/usr/lib/python3.11/lib-dynload/*.so; do
    "$patchelf" --force-rpath --set-rpath "\$ORIGIN/../../x86_64-linux-gnu" "$f"
  done
  [[ -d $tree/$lib ]] || die "no $lib in the unpacked packages"
}

collect_libraries() {   # collect_libraries TREE DEBS TOOLS: the packages, their closure, pruned, rpaths set
  local tree=$1 deps=$2 tools=$3 n d pkgs new
  mapfile -t pkgs < <(sed 's/#.*//' "$repo/scripts/bundle-debs.txt" | tr ' ' '\n' | sed '/^$/d')
  say "Debian packages: ${#pkgs[@]} listed, then the libraries they need"
  new=("${pkgs[@]}")
  for n in 1 2 3 4 5 6; do
    fetch_debs "$deps" "$tree" "${new[@]}"
    pkgs+=("${new[@]}")
    mapfile -t new < <("$PY" "$repo/scripts/bundle_closure.py" "$tree" | sed '/^$/d' |
                       grep -vxF -f <(printf '%s\n' "${pkgs[@]}") || true)
    [[ ${#new[@]} -gt 0 ]] || break
    say "  round $n: ${new[*]}"
  done
  [[ ${#new[@]} -eq 0 ]] || die "the libraries' dependencies did not close after 6 rounds: ${new[*]}"
  (cd "$tools" && apt-get download patchelf >/dev/null 2>&1 && dpkg -x patchelf_*.deb .) ||
    die "apt-get download patchelf failed"
  # Debian 12 packages still put some libraries under /lib (zlib, lzma, ...), which the system merges
  # into /usr/lib: merged here too, so the one directory the rpaths name holds them all.
  for d in lib lib64 bin sbin; do
    if [[ -d $tree/$d && ! -L $tree/$d ]]; then
      mkdir -p "$tree/usr/$d" && cp -a "$tree/$d/." "$tree/usr/$d/" && rm -rf "${tree:?}/$d"
    fi
  done
  rm -rf "$tree"/usr/share/{doc,man,info,lintian,locale,bug,gdb,bash-completion} "$tree/etc"
  find "$tree" -name '*.a' -delete
  set_rpaths "$tree" "$tools/usr/bin/patchelf"
}

quiet_pip() { grep -v 'is ignored: it is neither a file nor a directory' >&2; }

collect_wheels() {   # collect_wheels OUT CUDA: the Python wheels, the CUDA ones unless --no-cuda, the sdist
  local out=$1 cuda=$2 pins name version sha tarball
  say "Python wheels (requirements.txt, pip, setuptools)"
  "$PY" -m pip download -q --disable-pip-version-check -d "$out/wheels" -r "$repo/requirements.txt" \
    pip setuptools wheel 2> >(quiet_pip) || die "pip download of the wheels failed"
  if [[ -z $cuda ]]; then
    mkdir -p "$out/cuda"
    mapfile -t pins < <("$repo/scripts/cuda-pypi.sh" --pins cudnn)
    say "CUDA wheels: ${pins[*]}"
    "$PY" -m pip download -q --no-deps --disable-pip-version-check -d "$out/cuda" "${pins[@]}" \
      2> >(quiet_pip) || die "pip download of the CUDA wheels failed"
  fi
  name=$(sdist_pin SDIST_NAME) version=$(sdist_pin SDIST_VERSION) sha=$(sdist_pin SDIST_SHA256)
  tarball=$CACHE/sources/$name-$version.tar.gz
  if [[ -f $tarball ]]; then
    cp "$tarball" "$out/sources/"
  else
    "$PY" -m pip download -q --no-deps --no-binary :all: -d "$out/sources" "$name==$version" 2> >(quiet_pip) ||
      die "pip download $name==$version failed"
  fi
  [[ $(sha256sum "$out/sources/$name-$version.tar.gz" | cut -c1-64) == "$sha" ]] ||
    die "sha256 of $name-$version.tar.gz is not the pinned $sha"
}

make_bundle() {
  local out=$1 cuda=${2:-} parts
  [[ -z $cuda || $cuda == --no-cuda ]] || die "unknown option '$cuda' (only --no-cuda)"
  [[ -x $PY ]] || die "no python at $PY: run make venv first"
  [[ $("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') == 3.11 ]] ||
    die "$PY is not Python 3.11, the one Debian 12's Boost.Python (and so pycaffe) is built for"
  command -v apt-get >/dev/null && command -v dpkg >/dev/null || die "make the bundle on a Debian 12 machine"
  work=$(mktemp -d "${TMPDIR:-/tmp}/node-bundle.XXXXXX")   # global: the EXIT trap removes it
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/tree" "$work/debs" "$work/out/wheels" "$work/out/sources" "$work/tools"
  collect_libraries "$work/tree" "$work/debs" "$work/tools"
  say "libraries: $(du -sh "$work/tree" | cut -f1) unpacked; compressing"
  tar -C "$work/tree" -czf "$work/out/deps.tar.gz" usr
  collect_wheels "$work/out" "$cuda"
  "$PY" "$repo/scripts/bundle_closure.py" --manifest "$work/out" "$work/tree" "$work/debs" ||
    die "could not write the manifest"
  parts=(MANIFEST.json deps.tar.gz wheels sources)
  [[ -n $cuda ]] || parts+=(cuda)
  mkdir -p "$(dirname "$out")"
  tar -C "$work/out" -cf "$out.partial" "${parts[@]}"
  mv -f "$out.partial" "$out"
  say "wrote $out: $(du -h "$out" | cut -f1) ($(stat -c %s "$out") bytes; libraries $(du -h "$work/out/deps.tar.gz" | cut -f1),"\
      "wheels $(du -sh "$work/out/wheels" | cut -f1)${cuda:+, no CUDA}$([[ -n $cuda ]] || echo ", CUDA $(du -sh "$work/out/cuda" | cut -f1)"))"
}

version_at_least() { [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1) == "$2" ]]; }

check_node() {   # the node can run what the bundle holds
  local dest=$1 glibc glibcxx have lib
  glibc=$("$PY_SYS" -c 'import json,sys; print(json.load(open(sys.argv[1]))["needs"].get("GLIBC", "0"))' "$dest/MANIFEST.json")
  glibcxx=$("$PY_SYS" -c 'import json,sys; print(json.load(open(sys.argv[1]))["needs"].get("GLIBCXX", "0"))' "$dest/MANIFEST.json")
  have=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
  version_at_least "$have" "$glibc" ||
    die "this machine's glibc is $have; the bundle's libraries (Debian 12) need $glibc or newer"
  lib=$(ldconfig -p 2>/dev/null | sed -n 's/.*libstdc++.so.6 (libc6,x86-64) => //p' | head -1)
  [[ -z $lib ]] || grep -qa "GLIBCXX_$glibcxx" "$lib" ||
    die "this machine's libstdc++ ($lib) lacks GLIBCXX_$glibcxx, which the bundle's libraries need"
  "$dest/deps/usr/bin/python3.11" -c 'import ctypes, json, sqlite3, ssl, zlib' ||
    die "the bundle's Python 3.11 does not run here (see above)"
}

unpack_bundle() {
  local archive=$1 key dest
  [[ -f $archive ]] || die "BUNDLE=$archive: no such file"
  command -v python3 >/dev/null && PY_SYS=python3 || PY_SYS=""
  key=$(sha256sum "$archive" | cut -c1-16)
  dest=$CACHE/bundle/$key
  mkdir -p "$CACHE/bundle"
  exec 8>"$dest.lock"
  flock 8
  if [[ ! -f $dest/.complete ]]; then
    say "unpacking $archive into $dest"
    rm -rf "$dest.partial" "$dest"
    mkdir -p "$dest.partial/deps"
    tar -C "$dest.partial" --no-same-owner -xf "$archive"
    tar -C "$dest.partial/deps" --no-same-owner -xzf "$dest.partial/deps.tar.gz"
    rm "$dest.partial/deps.tar.gz"
    PY_SYS=${PY_SYS:-$dest.partial/deps/usr/bin/python3.11}
    check_node "$dest.partial"
    mv -T "$dest.partial" "$dest"
  fi
  PY_SYS=${PY_SYS:-$dest/deps/usr/bin/python3.11}
  check_node "$dest"
  mkdir -p "$CACHE/sources"
  cp -n "$dest"/sources/*.tar.gz "$CACHE/sources/"
  {
    echo "# written by scripts/node-bundle.sh unpack: the environment of an offline build from the bundle"
    echo "export TRANSFER_BUNDLE='$dest'"
    echo "export PYTHON='$dest/deps/usr/bin/python3.11'"
    echo "export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1"
    echo "export PIP_FIND_LINKS='$dest/wheels$([[ -d $dest/cuda ]] && echo " $dest/cuda")'"
    echo "export CAFFE_CMAKE_ARGS='-DCMAKE_PREFIX_PATH=$dest/deps/usr'"
    [[ -d $dest/cuda ]] && echo "export CAFFE_CUDA=pypi" || echo "export CAFFE_CUDA=system"
  } >"$dest/env.sh.tmp"
  mv -f "$dest/env.sh.tmp" "$dest/env.sh"
  touch "$dest/.complete"
  echo "$dest/env.sh"
}

case ${1:-} in
  make) [[ $# -ge 2 ]] || die "usage: node-bundle.sh make OUT [--no-cuda]"; make_bundle "$2" "${3:-}" ;;
  unpack) [[ $# -eq 2 ]] || die "usage: node-bundle.sh unpack ARCHIVE"; unpack_bundle "$2" ;;
  *) die "usage: node-bundle.sh make OUT [--no-cuda] | unpack ARCHIVE" ;;
esac
