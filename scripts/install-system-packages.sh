#!/usr/bin/env bash
# System packages the tool and its tests use, installed with apt when run as root (CI) and
# reported otherwise. None is needed to build for this host: a missing one makes the tests that
# need it skip with the reason.
#   g++                      links host libraries (TVM's export_library)
#   g++-aarch64-linux-gnu    cross-links Raspberry Pi / aarch64 libraries
#   qemu-user                runs the emulated aarch64 device (tvmc-mobilenet device emulate)
#   arm64 architecture       lets apt-get download the device's Debian arm64 CPython
set -euo pipefail
packages=(g++ g++-aarch64-linux-gnu qemu-user)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
need_arm64=0
dpkg --print-foreign-architectures 2>/dev/null | grep -qx arm64 || need_arm64=1
if [ ${#missing[@]} -eq 0 ] && [ $need_arm64 -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  if [ $need_arm64 -eq 1 ]; then
    echo "adding the arm64 architecture to apt (for the emulated device's packages)"
    dpkg --add-architecture arm64
  fi
  apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  echo "note: not root, so not installing ${missing[*]:-} (arm64 apt architecture needed: $need_arm64); the tests that need them will be skipped" >&2
fi
