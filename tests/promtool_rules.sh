#!/usr/bin/env bash
# The alert rules are valid and every alert's test passes (Prometheus's own promtool).
# Exit 77 (ctest: skipped) only when promtool is not installed.
set -euo pipefail
cd "$(dirname "$0")/../etc/prometheus"
if ! command -v promtool >/dev/null; then
  echo "SKIP: promtool not installed (apt-get install prometheus)"
  exit 77
fi
promtool check rules mailprobed.rules.yml
promtool test rules mailprobed.rules.test.yml
