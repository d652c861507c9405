#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   sudo tests/run-all.sh [BUILD_DIR]          (default build)
# 1. install the Debian packages (as root: tests/deps.sh);
# 2. build (gcc, RelWithDebInfo) and run every ctest: unit, integration against real Dovecot and
#    Postfix on loopback, the alert rules under promtool, the short soak and the quick benchmark;
# 3. the same unit and integration tests built with clang, AddressSanitizer and
#    UndefinedBehaviorSanitizer (tests/sanitize.sh) in BUILD_DIR-asan; that build is compiled
#    while stage 2's tests run, at the lowest CPU priority, so that it takes the CPU the tests
#    leave idle;
# 4. each libFuzzer target for FUZZ_SECONDS (default 20) from the same build (tests/fuzz/run.sh).
# Every stage runs even when an earlier one failed; the run fails at the end if any did, and
# prints the wall and CPU time of each stage.
# MAILPROBE_SANITIZERS=0 skips stages 3 and 4 (a quicker local run).
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
asan=$build-asan
sanitizers=${MAILPROBE_SANITIZERS:-1}
fuzz_seconds=${FUZZ_SECONDS:-20}

failed=()
summary=()
TIMEFORMAT='%R %U %S'
# stage NAME COMMAND...: runs it, records its wall and CPU time (children included) and its result.
stage() {
  local name=$1 t status
  shift
  echo "=== $name: $*"
  { t=$( { time "$@" 1>&3 2>&4; } 2>&1 ); } 3>&1 4>&2
  status=$?
  # shellcheck disable=SC2086
  set -- $t
  record "$name" $status "$1" "$2" "$3"
  return $status
}
# record NAME STATUS WALL USER SYS
record() {
  summary+=("$(awk -v n="$1" -v s="$2" -v w="$3" -v u="$4" -v y="$5" 'BEGIN {
    printf "%-22s %-6s wall %7.1f s   cpu %7.1f s", n, (s == 0 ? "ok" : "FAILED"), w, u + y }')")
  [ "$2" = 0 ] || failed+=("$1")
}

if [ "$(id -u)" = 0 ]; then
  stage deps tests/deps.sh || { printf '%s\n' "${summary[@]}"; exit 1; }
fi

stage configure cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
stage build cmake --build "$build" -j"$(nproc)"
build_ok=$?

asan_pid=
if [ "$sanitizers" = 1 ]; then
  # The sanitizer build goes on beside the tests, niced: the tests mostly wait on the servers.
  mkdir -p "$asan"
  (
    TIMEFORMAT='%R %U %S'
    { time nice -n 19 tests/sanitizer_build.sh "$asan" >"$asan/build.log" 2>&1; } 2>"$asan/build.time"
  ) &
  asan_pid=$!
fi

if [ "$build_ok" = 0 ]; then
  stage tests ctest --test-dir "$build" --output-on-failure --timeout 900
else
  failed+=("tests (not run: the build failed)")
fi

if [ -n "$asan_pid" ]; then
  wait "$asan_pid"
  asan_status=$?
  read -r wall user sys <"$asan/build.time" || true
  record "sanitizer build" $asan_status "${wall:-0}" "${user:-0}" "${sys:-0}"
  if [ $asan_status = 0 ]; then
    SANITIZE_NO_BUILD=1 stage "sanitizer tests" tests/sanitize.sh "$asan"
    FUZZ_BUILD_DIR=$asan stage "fuzz ${fuzz_seconds}s/target" tests/fuzz/run.sh "$fuzz_seconds"
  else
    echo "=== sanitizer build FAILED; the end of its log ($asan/build.log):" >&2
    tail -40 "$asan/build.log" >&2
  fi
fi

echo
echo "=== stages"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "all stages passed"
