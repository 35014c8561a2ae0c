#!/usr/bin/env bash
# Install the Debian packages of scripts/apt-packages.txt (or of the list given) that are missing
# (as root, or with sudo).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [[ -n ${TRANSFER_BUNDLE:-} ]]; then   # scripts/node-bundle.sh: the libraries come unpacked from it
  echo "install-deps: using the libraries of the node bundle $TRANSFER_BUNDLE (nothing installed)"
  exit 0
fi
list=${1:-$here/apt-packages.txt}
[[ -f $list ]] || { echo "install-deps: no package list $list" >&2; exit 1; }
mapfile -t wanted < <(grep -v '^\s*#' "$list" | sed '/^\s*$/d')
missing=()
for pkg in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#wanted[@]} Debian packages present"
  exit 0
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
