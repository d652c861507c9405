#!/usr/bin/env bash
# Configures and builds the clang build that tests/sanitize.sh and tests/fuzz/run.sh share:
# the whole suite (unit and integration tests, the daemon) and the libFuzzer targets, with
# AddressSanitizer and UndefinedBehaviorSanitizer, no recovery from UB.
#   tests/sanitizer_build.sh [BUILD_DIR [TARGET...]]     (default build-asan, every target)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-asan}
shift $(($# > 0 ? 1 : 0))
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DMAILPROBE_SANITIZE=ON -DMAILPROBE_FUZZ=ON -DMAILPROBE_BENCH=OFF \
  -DCMAKE_CXX_FLAGS="-fno-sanitize-recover=all" >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$build" -j"$(nproc)" "${targets[@]}"
