#!/usr/bin/env bash
# Prints a prefix (with include/ and share/cmake/) holding Vulkan and SPIR-V headers new enough
# for llama.cpp's Vulkan backend.
# Debian 12's libvulkan-dev (1.3.239) lacks what ggml-vulkan uses (vk::LayerSettingEXT), so the
# headers of Debian 13's libvulkan-dev and spirv-headers are fetched from the Debian archive this
# machine's apt already uses (apt-get download, signatures checked by apt) and unpacked into a
# private cache folder, never installed over the system's. The build then gets
# `CXXFLAGS=-isystem <prefix>/include` and `CMAKE_PREFIX_PATH=<prefix>` (for SPIRV-Headers' CMake
# package); the result links only libvulkan.so.1, which Debian 12 has.
set -euo pipefail
cache="${AIRLOCK_BUILD_CACHE:-$HOME/.cache/airlock-build}/vulkan-headers"
prefix="$cache/root/usr"
include="$prefix/include"
if [ -f "$include/vulkan/vulkan.hpp" ] && [ -d "$prefix/share/cmake/SPIRV-Headers" ]; then echo "$prefix"; exit 0; fi

sources=/etc/apt/sources.list.d/debian.sources
uri="$(awk '/^URIs:/{print $2; exit}' "$sources" 2>/dev/null || true)"
[ -n "$uri" ] || uri="$(awk '$1 == "deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
[ -n "$uri" ] || { echo "vulkan-headers: no Debian archive found in apt's sources" >&2; exit 1; }

apt_dir="$cache/apt"
rm -rf "$apt_dir" "$cache/root"
mkdir -p "$apt_dir/parts" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs" "$cache/root"
cat > "$apt_dir/parts/trixie.sources" <<SRC
Types: deb
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/parts" -o "Dir::State::Lists=$apt_dir/lists"
      -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root -qq)
apt-get "${opts[@]}" update >&2
(cd "$apt_dir/debs" && apt-get "${opts[@]}" download libvulkan-dev spirv-headers >&2)
for deb in "$apt_dir"/debs/*.deb; do dpkg-deb -x "$deb" "$cache/root"; done
# Headers only: the loader itself is Debian 12's libvulkan1.
rm -rf "$apt_dir" "$prefix/lib"
[ -f "$include/vulkan/vulkan.hpp" ] || { echo "vulkan-headers: vulkan.hpp missing after unpacking" >&2; exit 1; }
echo "$prefix"
