#!/usr/bin/env bash
# System packages the tool and its tests use, installed with apt when run as root (CI) and
# reported otherwise. Everything here is optional for building for this host: a missing
# package makes its tests skip with the reason.
#   g++                      links host libraries (TVM's export_library)
#   g++-aarch64-linux-gnu    cross-links Raspberry Pi / aarch64 libraries
set -euo pipefail
packages=(g++ g++-aarch64-linux-gnu)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "note: not root, so not installing ${missing[*]}; the tests that need them will be skipped" >&2
fi
