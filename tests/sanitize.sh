#!/usr/bin/env bash
# The whole test suite (unit and integration) built with AddressSanitizer and
# UndefinedBehaviorSanitizer (MAILPROBE_SANITIZE=ON) in a build dir of its own; any report
# fails the run: no recovery from UB, leaks checked at exit.
#   tests/sanitize.sh [BUILD_DIR]        (default build-asan; run as root for the integration
#                                         tests, which start Dovecot and Postfix)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-asan}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMAILPROBE_SANITIZE=ON \
  -DCMAKE_CXX_FLAGS="-fno-sanitize-recover=all" >/dev/null
cmake --build "$build" -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$build" --output-on-failure --timeout 1800
