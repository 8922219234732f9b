# Sourced by the scripts that build (demo.sh, test.sh, package.sh): one profile, one feature set
# and one set of compiler flags everywhere, so llama.cpp — minutes to build — is built once and
# shared by the tests, the demo and the packages. `cargo test` and `cargo build` resolve the same
# llama-cpp-sys-2 because nothing the tests add reaches its build script (the window's end-to-end
# test, whose WebDriver client would, is a package of its own: tests/e2e); test.sh checks it. The Vulkan backend needs newer headers than
# Debian 12 has (scripts/vulkan-headers.sh).
vulkan_prefix="$(scripts/vulkan-headers.sh)"
export CXXFLAGS="-isystem $vulkan_prefix/include"
export CMAKE_PREFIX_PATH="$vulkan_prefix"
# llama.cpp's RPC backend (libggml-rpc.so) lets `serve --rpc` use other machines' devices and
# `airlock rpc-worker` offer this one's; llama-cpp-sys-2 passes GGML_* variables to CMake.
export GGML_RPC=ON
# llama-cpp-sys-2 configures CMake only once per build folder, so a folder configured before
# GGML_RPC was set would never gain the module: drop that configuration and cargo's record of
# the build script, and the next build reconfigures (recompiling only what changed).
for cmake_cache in "${CARGO_TARGET_DIR:-target}"/release/build/llama-cpp-sys-2-*/out/build/CMakeCache.txt; do
  if [ -f "$cmake_cache" ] && grep -q '^GGML_RPC:BOOL=OFF' "$cmake_cache"; then
    rm -f "$cmake_cache"
    rm -rf "${CARGO_TARGET_DIR:-target}"/release/.fingerprint/llama-cpp-sys-2-*
  fi
done
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo_flags=(--release --locked --features vulkan)
target="${CARGO_TARGET_DIR:-target}"
# llama-cpp-sys-2's build script hard-links its libraries into the target folder and trips over
# links a build with other features left dangling there: clear those first.
clear_dangling() { if [ -d "$target" ]; then find "$target" -maxdepth 3 -xtype l -name "lib*.so*" -delete; fi; }
# The app as a user builds it: the demo, the packages and the end-to-end test run these binaries.
build_app() { cargo build "${cargo_flags[@]}" --bin airlock --bin airlock-desktop; }
