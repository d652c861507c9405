#!/usr/bin/env bash
# The whole test suite (unit and integration) built with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer (tests/sanitizer_build.sh) in a build dir of its own; any report
# fails the run: no recovery from UB, leaks checked at exit.
#   tests/sanitize.sh [BUILD_DIR]        (default build-asan; run as root for the integration
#                                         tests, which start Dovecot and Postfix)
# SANITIZE_NO_BUILD=1 runs the tests of a build tests/sanitizer_build.sh already made.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-asan}
if [ "${SANITIZE_NO_BUILD:-0}" != 1 ]; then
  tests/sanitizer_build.sh "$build"
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# The soak and the benchmark measure memory and CPU: they run in the plain build only.
ctest --test-dir "$build" --output-on-failure --timeout 1800 -LE 'soak|bench'
