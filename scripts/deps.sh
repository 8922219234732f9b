#!/usr/bin/env bash
# Installs the Debian packages the build needs (only those missing). Needs root or sudo.
set -euo pipefail
pkgs=(build-essential pkg-config cmake clang libclang-dev python3 python3-pip python3-venv)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
