#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (AddressSanitizer, UndefinedBehaviorSanitizer;
# tests/sanitizer_build.sh) in a build dir of their own and runs each for SECONDS (default 30)
# from its seed corpus in tests/fuzz/corpus/<target>. Fails on the first crash, leak,
# sanitizer report or timeout; libFuzzer leaves the input that did it as
# crash-*/leak-*/timeout-* in the work dir.
#   tests/fuzz/run.sh [SECONDS]
# Environment: FUZZ_BUILD_DIR (default build-fuzz, relative to the repo), FUZZ_WORK_DIR (default
# $FUZZ_BUILD_DIR/fuzz-work: grown corpora, logs and crash inputs; the seed corpus in the repo
# is never written),
# FUZZ_TARGETS (default "smtp_reply_fuzz imap_response_fuzz config_fuzz"), FUZZ_JOBS (default 1,
# parallel fuzzing processes per target for long runs).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-30}
build=${FUZZ_BUILD_DIR:-build-fuzz}
work=${FUZZ_WORK_DIR:-$build/fuzz-work}
targets=${FUZZ_TARGETS:-smtp_reply_fuzz imap_response_fuzz config_fuzz}
jobs=${FUZZ_JOBS:-1}

# The same clang build as tests/sanitize.sh: a build dir can serve both.
# shellcheck disable=SC2086
tests/sanitizer_build.sh "$build" $targets

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
root=$PWD
parallel=()
if [ "$jobs" -gt 1 ]; then
  parallel=(-jobs="$jobs" -workers="$jobs")  # libFuzzer then writes fuzz-N.log in its cwd
fi
status=0
for target in $targets; do
  dir=$(realpath -m "$work/$target")
  mkdir -p "$dir/corpus" "$dir/artifacts"
  log=$dir/fuzz.log
  echo "fuzz: $target for ${seconds}s (log $log)"
  # New inputs go to the work corpus; the seed corpus is only read.
  if (cd "$dir" && "$root/$build/tests/fuzz/$target" corpus "$root/tests/fuzz/corpus/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "${parallel[@]}" >"$log" 2>&1); then
    grep -hE '^stat::number_of_executed_units|^stat::peak_rss_mb' "$log" "$dir"/fuzz-*.log \
      2>/dev/null | sed "s/^/  /" || true
    echo "  corpus: $(find "$dir/corpus" -type f | wc -l) inputs"
  else
    status=1
    echo "fuzz: $target FAILED; the input is in $dir/artifacts:" >&2
    ls -l "$dir/artifacts" >&2
    grep -hE -A25 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|runtime error|invariant violated' \
      "$log" "$dir"/fuzz-*.log 2>/dev/null | head -60 >&2 || tail -40 "$log" >&2
  fi
done
exit $status
