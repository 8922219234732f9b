#!/usr/bin/env bash
# Installs what the build and the tests need (only what is missing): Debian packages (the C
# toolchain for llama.cpp, GTK/WebKit for the desktop app, Xvfb and WebKitWebDriver for its
# end-to-end test; Docker Distribution, htpasswd and openssl for the registry tests, which start
# /usr/bin/docker-registry themselves on a free port, so the package's own service never matters;
# minisign, with which the far side checks a kit before any Airlock program runs), and Node.js
# when the machine has none. Needs root or sudo.
set -euo pipefail
pkgs=(build-essential pkg-config cmake clang libclang-dev python3 python3-pip python3-venv
      libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev libsoup-3.0-dev
      xvfb xauth webkit2gtk-driver xdotool dpkg-dev glslc libvulkan-dev mesa-vulkan-drivers strace
      docker-registry apache2-utils openssl minisign curl procps systemd haproxy)
command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
