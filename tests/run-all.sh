#!/usr/bin/env bash
# The whole test suite, as CI runs it: install the Debian packages (as root), build, run every
# test (unit and integration against real Dovecot and Postfix on loopback).
#   sudo tests/run-all.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
if [ "$(id -u)" = 0 ]; then
  tests/deps.sh
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure --timeout 900
