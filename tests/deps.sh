#!/usr/bin/env bash
# Installs, from Debian 12 packages, everything mailprobed needs to build and to run its whole
# test suite (real Dovecot and Postfix, promtool, Alertmanager, swaks, curl, headless Chromium).
# Needs root. Idempotent.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config
  libuv1-dev libssl-dev prometheus-cpp-dev libtomlplusplus-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libsystemd-dev libxml2-dev
  # the loopback mail servers of the integration tests and the demo
  dovecot-core dovecot-imapd postfix openssl
  # real clients and tools the tests compare against; chromium renders the status page;
  # prometheus-alertmanager receives the daemon's pushed alerts (the tests run their own on
  # 127.0.0.1, on a port of theirs)
  swaks curl iproute2 prometheus prometheus-alertmanager systemd chromium
  # the benchmark (bench/run.sh, and its quick mode as the ctest bench_quick) compares
  # mailprobed with blackbox_exporter and times openssl s_time with GNU time
  prometheus-blackbox-exporter time
  # swaks's TLS (Net::SSLeay) and AUTH CRAM-MD5 (Digest::HMAC_MD5) are only Recommends or
  # Suggests: without them, with --no-install-recommends, swaks -tls exits 10
  libnet-ssleay-perl libauthen-sasl-perl libdigest-hmac-perl
  # the AddressSanitizer + UndefinedBehaviorSanitizer build and the libFuzzer targets
  # (tests/sanitizer_build.sh): clang, and its sanitizer and fuzzer runtimes
  clang libclang-rt-14-dev
)

if [ "$(id -u)" != 0 ]; then
  echo "tests/deps.sh: run as root (sudo) to install: ${packages[*]}" >&2
  exit 1
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Postfix unconfigured: the tests run private instances; the system one must not start on :25.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
