#!/usr/bin/env bash
# bench/run.sh: what a probe costs mailprobed, blackbox_exporter and a bare TLS handshake, in
# one run against the same loopback Dovecot and Postfix (tests/integration/mailenv.sh).
#
# Usage: sudo bench/run.sh [--quick] [--out FILE] [--build-dir DIR | --binaries DIR]
#                          [--no-install] [--keep]
#   --quick      fewer probes (< 3 minutes), for CI; writes BUILD_DIR/bench-quick.md by default
#   --out FILE   where to write the report (default: bench/RESULTS.md, or the quick file)
#   --build-dir  CMake build directory (default: build-bench at the repository root), built
#                here as Release
#   --binaries   a CMake build directory whose probe_bench, metrics_bench and mailprobed are
#                used as they are (nothing is built; the ctest bench_quick)
#   --no-install a missing Debian package, or not being root, is a skip (exit 77, the reason on
#                stdout) instead of an apt-get install (or an error)
#   --keep       keep the work directory (configs, logs, raw lines) instead of removing it
#   --steps LIST only these steps, comma-separated (paired, blackbox, resumption, saturation,
#                drift, daemon, render, instructions), to work on one of them; the report's
#                other figures are then empty
#
# Measured, all on loopback, each in the same run:
#   1. mailprobed: bench/probe_bench (EndpointProbe on one libuv loop, auth skipped, so the
#      conversation is blackbox's: greeting, capabilities, STARTTLS, handshake, capabilities,
#      logout/quit), its own user+sys CPU (getrusage), RSS, and the real Scheduler's drift;
#      then the real daemon (`mailprobed run`) with 1,000 endpoints: RSS and /metrics time.
#   2. prometheus-blackbox-exporter: tcp modules (query_response + starttls, or tls: true) for
#      the same four endpoints, driven through /probe by one curl process; only the exporter's
#      utime+stime (/proc/PID/stat) count; every probe must return probe_success 1.
#   3. the floor: `openssl s_time -new` full handshakes on the implicit-TLS ports (CPU of the
#      s_time process), and a bare TCP connect + greeting read (probe_bench greeting), each run
#      paired with a mailprobed run of the same kind right after it (the ratio is the median of
#      the pairs' ratios: machine noise hits both sides of a pair alike).
#   4. instructions per probe, mailprobed's and the floor's, counted by valgrind's callgrind
#      (not in --quick): a count does not depend on the machine's load, nor on how long a
#      process waits; it tells the code's cost from the cost of waiting.
# Every figure is CPU time, not wall time: the machine is shared with the servers themselves.
# Exit status: 0 when every probe of every tool succeeded (the comparison holds: the daemon's
# 1,000 endpoints all up included), 1 otherwise, 77 for a skip (--no-install); targets missed
# are reported in the file, not in the exit status.
set -euo pipefail

export PATH=/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build-bench
QUICK=no KEEP=no OUT="" PREBUILT=no INSTALL=yes STEPS=""
COMMAND="bench/run.sh $*"

die() {
  echo "bench: $*" >&2
  exit 1
}
log() { echo "bench: $*" >&2; }

while (($# > 0)); do
  case $1 in
    --quick) QUICK=yes ;;
    --keep) KEEP=yes ;;
    --out)
      OUT=$(realpath -m -- "${2:?--out needs a file}")
      shift
      ;;
    --build-dir)
      BUILD=$(realpath -m -- "${2:?--build-dir needs a directory}")
      shift
      ;;
    --binaries)
      BUILD=$(realpath -m -- "${2:?--binaries needs a build directory}")
      PREBUILT=yes
      shift
      ;;
    --no-install) INSTALL=no ;;
    --steps)
      STEPS=${2:?--steps needs a list}
      shift
      ;;
    -h | --help)
      sed -n '/^# Usage:/,/^#$/p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

# Sizes. Full: the issue's figures (20,000 probes for memory, 1,000 endpoints).
if [[ $QUICK == yes ]]; then
  PAIRS=1 REPEATS=1 KIND_PROBES=200 GREETINGS=200 STIME_SECONDS=3 MEM_PROBES=1000 SAT_CONCURRENCY=32
  SCHED_SECONDS=8 RESUME_HANDSHAKES=100 RESUME_STIME_SECONDS=1 METRICS_SCRAPES=10
  DAEMON_CPU_SECONDS=0 DAEMON_SETTLE_SECONDS=0 RENDER_ROUNDS=5 INSTR_PROBES=0
  OUT=${OUT:-$BUILD/bench-quick.md}
else
  PAIRS=5 REPEATS=3 KIND_PROBES=1000 GREETINGS=1000 STIME_SECONDS=10 MEM_PROBES=20000
  SAT_CONCURRENCY=32
  SCHED_SECONDS=60 RESUME_HANDSHAKES=1000 RESUME_STIME_SECONDS=10 METRICS_SCRAPES=30
  DAEMON_CPU_SECONDS=20 DAEMON_SETTLE_SECONDS=75 RENDER_ROUNDS=15 INSTR_PROBES=100
  OUT=${OUT:-$ROOT/bench/RESULTS.md}
fi
CONCURRENCY=8 DAEMON_ENDPOINTS=1000
KINDS=(imap-starttls imaps smtp-starttls smtps)

skip() {
  echo "SKIP: $*"
  exit 77
}
if ((EUID != 0)); then
  [[ $INSTALL == no ]] && skip "bench/run.sh must run as root: the loopback Dovecot and Postfix start as root"
  die "must run as root: the loopback Dovecot and Postfix start as root"
fi

# ---------------------------------------------------------------------------------------------
# Packages and build.

need_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$pkg")
  done
  if ((${#missing[@]} > 0)); then
    [[ $INSTALL == no ]] && skip "not installed: ${missing[*]} (tests/deps.sh installs them)"
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
      >/dev/null
  fi
}
need_packages prometheus-blackbox-exporter curl openssl time dovecot-core dovecot-imapd postfix \
  iproute2 procps util-linux
((INSTR_PROBES > 0)) && need_packages valgrind
# The package enables a system instance on port 9115 (all interfaces); ours listens on loopback.
# It is left alone, neither used nor stopped.

if [[ $PREBUILT == no ]]; then
  log "building in $BUILD"
  mkdir -p "$BUILD"
  if ! { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DMAILPROBE_BENCH=ON &&
    cmake --build "$BUILD" -j"$(nproc)" --target probe_bench metrics_bench mailprobed; } >"$BUILD/bench-build.log" 2>&1; then
    tail -n 30 "$BUILD/bench-build.log" >&2
    die "build failed (full log: $BUILD/bench-build.log)"
  fi
fi
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
BENCH=$BUILD/bench/probe_bench
METRICS_BENCH=$BUILD/bench/metrics_bench
MAILPROBED=$BUILD/daemon/mailprobed
for bin in "$BENCH" "$METRICS_BENCH" "$MAILPROBED"; do
  [[ -x $bin ]] || die "$bin is not built"
done

# ---------------------------------------------------------------------------------------------
# The work directory, the servers, and cleanup on any exit.

WORK=$(mktemp -d /tmp/mailprobe-bench.XXXXXX)
chmod 0755 "$WORK" # the servers' users must traverse it
ENV_DIR=$WORK/mailenv
RAW=$WORK/raw.txt
BB_PID="" DAEMON_PID=""

stop_pid() {
  local pid=$1 i
  [[ -n $pid && -d /proc/$pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    [[ -d /proc/$pid ]] || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$BB_PID"
  stop_pid "$DAEMON_PID"
  "$ROOT/tests/integration/mailenv.sh" stop "$ENV_DIR" >/dev/null 2>&1 || true
  if [[ $KEEP == yes ]]; then
    log "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting Dovecot and Postfix on loopback"
"$ROOT/tests/integration/mailenv.sh" start "$ENV_DIR" >"$WORK/mailenv.log" 2>&1 ||
  die "mailenv did not start: $(tail -n 20 "$WORK/mailenv.log")"
# shellcheck disable=SC1091
source "$ENV_DIR/env"
CERTS=$ENV_DIR/certs

# The daemon's 1,000 endpoints need 250 distinct host names whose certificate verifies: give the
# 127.0.0.1 listeners a certificate from the same CA that also covers *.bench.localhost, then
# reload both servers (the files are read again on reload). Every tool sees the same certificate.
wildcard_certificate() {
  local cnf=$WORK/wildcard.cnf
  cat >"$cnf" <<EOF
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = localhost
[ ext ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, DNS:*.bench.localhost, IP:127.0.0.1, IP:::1
EOF
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/wildcard.key" 2>/dev/null
  openssl req -new -config "$cnf" -key "$WORK/wildcard.key" -out "$WORK/wildcard.csr"
  openssl x509 -req -in "$WORK/wildcard.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" \
    -CAcreateserial -CAserial "$WORK/wildcard.srl" -days 30 -sha256 -extfile "$cnf" \
    -extensions ext -out "$WORK/wildcard.crt" 2>/dev/null
  install -m 0600 "$WORK/wildcard.key" "$CERTS/valid.key"
  install -m 0644 "$WORK/wildcard.crt" "$CERTS/valid.crt"
  "$ROOT/tests/integration/mailenv.sh" postconf "$ENV_DIR" 'smtpd_tls_loglevel = 1' >/dev/null
  "$ROOT/tests/integration/mailenv.sh" doveconf "$ENV_DIR" 'ssl_min_protocol = TLSv1.2' >/dev/null
  local san
  san=$(openssl s_client -connect "127.0.0.1:$IMAPS_PORT" -servername localhost </dev/null \
    2>/dev/null | openssl x509 -noout -ext subjectAltName 2>/dev/null || true)
  [[ $san == *bench.localhost* ]] || die "Dovecot did not take the wildcard certificate"
}
wildcard_certificate

port_of() {
  case $1 in
    imap-starttls) echo "$IMAP_STARTTLS_PORT" ;;
    imaps) echo "$IMAPS_PORT" ;;
    smtp-starttls) echo "$SUBMISSION_PORT" ;;
    smtps) echo "$SMTPS_PORT" ;;
  esac
}
module_of() { echo "${1//-/_}"; }

# wait_http URL: true once URL answers 2xx, within 10 s.
wait_http() {
  local i
  for ((i = 0; i < 100; i++)); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.1
  done
  return 1
}

free_port() {
  local p tries
  for ((tries = 0; tries < 200; tries++)); do
    p=$(((RANDOM << 15 | RANDOM) % 30001 + 20000))
    [[ -z $(ss -ltnH "sport = :$p") ]] && echo "$p" && return 0
  done
  die "no free port"
}

# ---------------------------------------------------------------------------------------------
# Small helpers: key=value lines, medians, arithmetic.

kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
raw() { echo "$*" >>"$RAW"; }

# ---------------------------------------------------------------------------------------------
# 1. mailprobed and the floor, per kind, in pairs: the floor, then at once mailprobed's probes
#    (TLS contexts from a TlsContextCache, as the daemon has them), PAIRS times.

declare -A MP_MS MP_RESUME_MS MP_RESUMED BB_MS FLOOR_MS RATIO STIME_MS GREETING_MS MP_SYS_MS \
  STIME_SYS_MS
probe_line() {
  local line
  # A failed probe makes probe_bench exit 1: reported (failed=N), not fatal.
  line=$("$BENCH" probe "$@" --ca-file "$CA_FILE" --max-seconds 600) || true
  [[ $line == mode=probe* ]] || die "probe_bench failed: $line"
  raw "$line"
  echo "$line"
}

# stime_ms SECONDS PORT [s_time options]: client CPU (user+sys) per connection of `openssl s_time`.
stime_ms() {
  local seconds=$1 port=$2 out n u s
  shift 2
  out=$( (/usr/bin/time -f 'cpu %U %S' openssl s_time -connect "127.0.0.1:$port" "$@" \
    -time "$seconds" -CAfile "$CA_FILE" -verify 2 2>&1) || true)
  n=$(sed -n 's/^\([0-9][0-9]*\) connections in [0-9.]*s;.*/\1/p' <<<"$out" | head -n1)
  read -r u s < <(sed -n 's/^cpu //p' <<<"$out")
  [[ -n $n && $n -gt 0 ]] || die "openssl s_time on port $port made no connection: $out"
  raw "s_time port=$port opts=$* connections=$n user_s=$u sys_s=$s"
  calc "1000 * ($u + $s) / $n" 4
}

# The implicit-TLS port of a kind's server (where s_time measures the handshake) and its service.
tls_port_of() { [[ $1 == imap* ]] && echo "$IMAPS_PORT" || echo "$SMTPS_PORT"; }
service_of() { [[ $1 == imap* ]] && echo imap || echo smtp; }

measure_paired() {
  local kind r line floor stime greeting mp
  for kind in "${KINDS[@]}"; do
    local floors=() mps=() ratios=() stimes=() greetings=() mp_sys=() stime_sys=() last
    for ((r = 0; r < PAIRS; r++)); do
      stime=$(stime_ms "$STIME_SECONDS" "$(tls_port_of "$kind")" -new)
      stimes+=("$stime")
      last=$(tail -n 1 "$RAW")
      stime_sys+=("$(calc "1000 * $(kv "$last" sys_s) / $(kv "$last" connections)" 4)")
      floor=$stime
      if [[ $kind == *-starttls ]]; then
        line=$("$BENCH" greeting --port "$(port_of "$kind")" --service "$(service_of "$kind")" \
          --count "$GREETINGS" --max-seconds 300) || die "greeting floor failed: $line"
        raw "$line"
        greeting=$(kv "$line" cpu_ms_per_probe)
        greetings+=("$greeting")
        floor=$(calc "$stime + $greeting" 4)
      fi
      line=$(probe_line --target "$kind=$(port_of "$kind")" --count "$KIND_PROBES" \
        --concurrency "$CONCURRENCY")
      mp=$(kv "$line" cpu_ms_per_probe)
      mp_sys+=("$(calc "1000 * $(kv "$line" sys_s) / $(kv "$line" probes)" 4)")
      floors+=("$floor")
      mps+=("$mp")
      ratios+=("$(calc "$mp / $floor" 4)")
      raw "pair kind=$kind floor_ms=$floor mailprobed_ms=$mp ratio=${ratios[-1]}"
    done
    FLOOR_MS[$kind]=$(median "${floors[@]}")
    MP_MS[$kind]=$(median "${mps[@]}")
    RATIO[$kind]=$(median "${ratios[@]}")
    STIME_MS[$kind]=$(median "${stimes[@]}")
    MP_SYS_MS[$kind]=$(median "${mp_sys[@]}")
    STIME_SYS_MS[$kind]=$(median "${stime_sys[@]}")
    GREETING_MS[$kind]=$( ((${#greetings[@]} > 0)) && median "${greetings[@]}" || echo 0)
    log "$kind: floor ${FLOOR_MS[$kind]} ms, mailprobed ${MP_MS[$kind]} ms per probe," \
      "ratio ${RATIO[$kind]} (median of $PAIRS pairs)"
  done
}

# ---------------------------------------------------------------------------------------------
# 2. blackbox_exporter.

BB_PORT=""
# bb_module NAME starttls|tls STEP...: one tcp module. STEP: expect:REGEX, send:LINE (CR added;
# blackbox adds the LF) or starttls.
bb_module() {
  local name=$1 mode=$2 step
  shift 2
  printf '  %s:\n    prober: tcp\n    timeout: 15s\n    tcp:\n      preferred_ip_protocol: ip4\n' "$name"
  if [[ $mode == tls ]]; then echo "      tls: true"; fi
  echo "      tls_config: {ca_file: \"$CA_FILE\", server_name: localhost}"
  echo "      query_response:"
  for step in "$@"; do
    case $step in
      expect:*) printf '        - expect: "%s"\n' "${step#expect:}" ;;
      send:*) printf '        - send: "%s\\r"\n' "${step#send:}" ;;
      starttls) echo "        - starttls: true" ;;
    esac
  done
}

write_blackbox_config() {
  {
    echo "# The conversation of bench/probe_bench with auth skipped, in blackbox's tcp prober."
    echo "modules:"
    bb_module imap_starttls starttls 'expect:^\\* OK' 'send:a1 CAPABILITY' 'expect:^a1 OK' \
      'send:a2 STARTTLS' 'expect:^a2 OK' starttls 'send:a3 CAPABILITY' 'expect:^a3 OK' \
      'send:a4 LOGOUT' 'expect:^a4 OK'
    bb_module imaps tls 'expect:^\\* OK' 'send:a1 CAPABILITY' 'expect:^a1 OK' 'send:a2 LOGOUT' \
      'expect:^a2 OK'
    bb_module smtp_starttls starttls 'expect:^220 ' 'send:EHLO prober.invalid' 'expect:^250 ' \
      'send:STARTTLS' 'expect:^220 ' starttls 'send:EHLO prober.invalid' 'expect:^250 ' \
      'send:QUIT' 'expect:^221 '
    bb_module smtps tls 'expect:^220 ' 'send:EHLO prober.invalid' 'expect:^250 ' 'send:QUIT' \
      'expect:^221 '
  } >"$WORK/blackbox.yml"
  prometheus-blackbox-exporter --config.file="$WORK/blackbox.yml" --config.check >/dev/null 2>&1 ||
    die "blackbox_exporter refuses $WORK/blackbox.yml"
}

start_blackbox() {
  stop_pid "$BB_PID"
  BB_PORT=$(free_port)
  prometheus-blackbox-exporter --config.file="$WORK/blackbox.yml" \
    --web.listen-address="127.0.0.1:$BB_PORT" --log.level=warn >>"$WORK/blackbox.log" 2>&1 &
  BB_PID=$!
  wait_http "http://127.0.0.1:$BB_PORT/-/healthy" || die "blackbox_exporter did not start:" \
    "$(tail -n 5 "$WORK/blackbox.log")"
}

# utime + stime of the exporter, in clock ticks (all its threads, live and gone).
bb_ticks() { pid_ticks "$BB_PID"; }
pid_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# bb_run COUNT CONCURRENCY KIND...: COUNT probes, the kinds in turn. Prints "ticks ok".
bb_run() {
  local count=$1 conc=$2 i kind
  shift 2
  local kinds=("$@") urls=$WORK/urls.txt
  for ((i = 0; i < count; i++)); do
    kind=${kinds[i % ${#kinds[@]}]}
    echo "url = \"http://127.0.0.1:$BB_PORT/probe?module=$(module_of "$kind")&target=127.0.0.1:$(port_of "$kind")\""
  done >"$urls"
  local t0 t1
  t0=$(bb_ticks)
  curl -s --no-progress-meter --max-time 30 --parallel --parallel-max "$conc" -K "$urls" \
    >"$WORK/bb-out.txt" 2>>"$WORK/curl.log" || true
  t1=$(bb_ticks)
  echo "$((t1 - t0)) $(grep -c '^probe_success 1$' "$WORK/bb-out.txt" || true)"
}

BB_FAILED=0
measure_blackbox() {
  local kind r values ticks ok hz
  hz=$(getconf CLK_TCK)
  for kind in "${KINDS[@]}"; do
    read -r ticks ok < <(bb_run 20 "$CONCURRENCY" "$kind") # warm-up
    values=()
    for ((r = 0; r < REPEATS; r++)); do
      read -r ticks ok < <(bb_run "$KIND_PROBES" "$CONCURRENCY" "$kind")
      raw "blackbox kind=$kind probes=$KIND_PROBES ok=$ok ticks=$ticks hz=$hz"
      if ((ok != KIND_PROBES)); then
        BB_FAILED=1
        log "blackbox $kind: only $ok of $KIND_PROBES probes returned probe_success 1"
      fi
      values+=("$(calc "1000 * $ticks / $hz / $KIND_PROBES" 4)")
    done
    BB_MS[$kind]=$(median "${values[@]}")
    log "blackbox $kind: ${BB_MS[$kind]} ms/probe"
  done
}

# TLS session resumption: s_time -reuse (TLS 1.2 and 1.3), probe_bench's in-process client
# that reads the greeting (so TLS 1.3 tickets arrive) and offers the previous session, and
# mailprobed's whole probe of each kind with tls_resumption = true.
declare -A RESUME
measure_resumption() {
  local port name line kind r values
  for kind in "${KINDS[@]}"; do
    values=()
    for ((r = 0; r < REPEATS; r++)); do
      line=$(probe_line --target "$kind=$(port_of "$kind")" --count "$KIND_PROBES" \
        --concurrency "$CONCURRENCY" --resume yes)
      values+=("$(kv "$line" cpu_ms_per_probe)")
      MP_RESUMED[$kind]=$(kv "$line" resumed)
    done
    MP_RESUME_MS[$kind]=$(median "${values[@]}")
  done
  for name in imaps smtps; do
    port=$(port_of "$name")
    RESUME[$name-stime-new12]=$(stime_ms "$RESUME_STIME_SECONDS" "$port" -new -tls1_2)
    RESUME[$name-stime-reuse12]=$(stime_ms "$RESUME_STIME_SECONDS" "$port" -reuse -tls1_2)
    RESUME[$name-stime-reuse13]=$(stime_ms "$RESUME_STIME_SECONDS" "$port" -reuse -tls1_3)
    for mode in no yes; do
      line=$("$BENCH" handshake --port "$port" --count "$RESUME_HANDSHAKES" --resume "$mode" \
        --ca-file "$CA_FILE" --max-seconds 300) || die "handshake bench failed: $line"
      raw "$line"
      if [[ $mode == no ]]; then
        RESUME[$name-full]=$(kv "$line" cpu_ms_per_probe)
      else
        RESUME[$name-resumed]=$(kv "$line" cpu_ms_per_probe)
        RESUME[$name-resumed-count]=$(kv "$line" resumed)
      fi
    done
  done
}

# ---------------------------------------------------------------------------------------------
# Saturation and memory: MEM_PROBES probes, the four kinds in turn, SAT_CONCURRENCY in flight.

declare -A SAT
measure_saturation() {
  local targets=() kind line ticks ok hz
  hz=$(getconf CLK_TCK)
  for kind in "${KINDS[@]}"; do targets+=(--target "$kind=$(port_of "$kind")"); done
  line=$(probe_line "${targets[@]}" --count "$MEM_PROBES" --concurrency "$SAT_CONCURRENCY")
  SAT[mp-ms]=$(kv "$line" cpu_ms_per_probe)
  SAT[mp-per-core]=$(kv "$line" probes_per_cpu_s)
  SAT[mp-wall]=$(kv "$line" probes_per_wall_s)
  SAT[mp-idle]=$(kv "$line" rss_idle_kib)
  SAT[mp-rss]=$(kv "$line" rss_kib)
  SAT[mp-hwm]=$(kv "$line" hwm_kib)
  # A fresh exporter, so that its RSS is that of this run alone.
  start_blackbox
  sleep 1
  SAT[bb-idle]=$(pid_kib "$BB_PID" VmRSS)
  local t0 t1
  t0=$(date +%s.%N)
  read -r ticks ok < <(bb_run "$MEM_PROBES" "$SAT_CONCURRENCY" "${KINDS[@]}")
  t1=$(date +%s.%N)
  raw "blackbox saturation probes=$MEM_PROBES ok=$ok ticks=$ticks hz=$hz concurrency=$SAT_CONCURRENCY"
  if ((ok != MEM_PROBES)); then
    BB_FAILED=1
    log "blackbox saturation: only $ok of $MEM_PROBES probes returned probe_success 1"
  fi
  SAT[bb-ms]=$(calc "1000 * $ticks / $hz / $MEM_PROBES" 4)
  SAT[bb-per-core]=$(calc "$MEM_PROBES * $hz / $ticks" 1)
  SAT[bb-wall]=$(calc "$MEM_PROBES / ($t1 - $t0)" 1)
  SAT[bb-rss]=$(pid_kib "$BB_PID" VmRSS)
  SAT[bb-hwm]=$(pid_kib "$BB_PID" VmHWM)
  log "saturation: mailprobed ${SAT[mp-per-core]} probes/s/core," \
    "RSS ${SAT[mp-rss]} KiB; blackbox ${SAT[bb-per-core]} probes/s/core," \
    "RSS ${SAT[bb-rss]} KiB"
}

# ---------------------------------------------------------------------------------------------
# Scheduling drift: the real Scheduler, many endpoints on a short interval, the daemon's cap.

declare -A DRIFT
measure_drift() {
  local targets=() kind line name endpoints
  for kind in "${KINDS[@]}"; do targets+=(--target "$kind=$(port_of "$kind")"); done
  # "busy": the loop probes without pause but below what the machine can do (~60 % of the
  # saturation rate); "overload": twice what it can do, so runs queue for a free slot.
  local rate=${SAT[mp-wall]%.*}
  for name in busy overload; do
    if [[ $name == busy ]]; then
      endpoints=$((rate * 12 / 10))
    else
      endpoints=$((rate * 2 * 2))
    fi
    ((endpoints >= 8)) || endpoints=8
    line=$("$BENCH" schedule "${targets[@]}" --endpoints "$endpoints" --interval-ms 2000 \
      --cap 64 --seconds "$SCHED_SECONDS" --ca-file "$CA_FILE" --max-seconds 600) ||
      die "scheduler bench failed: $line"
    raw "$line"
    DRIFT[$name-endpoints]=$endpoints
    DRIFT[$name-p50]=$(kv "$line" drift_p50_ms)
    DRIFT[$name-p99]=$(kv "$line" drift_p99_ms)
    DRIFT[$name-max]=$(kv "$line" drift_max_ms)
    DRIFT[$name-waited]=$(kv "$line" waited_for_slot)
    DRIFT[$name-timer-p50]=$(kv "$line" timer_drift_p50_ms)
    DRIFT[$name-timer-p99]=$(kv "$line" timer_drift_p99_ms)
    DRIFT[$name-timer-max]=$(kv "$line" timer_drift_max_ms)
    DRIFT[$name-probes]=$(kv "$line" probes)
    DRIFT[$name-failed]=$(kv "$line" failed)
    DRIFT[$name-inflight]=$(kv "$line" max_in_flight_seen)
    DRIFT[$name-rate]=$(kv "$line" probes_per_wall_s)
    log "drift ($name, $endpoints endpoints every 2 s, cap 64): p50 ${DRIFT[$name-p50]} ms," \
      "p99 ${DRIFT[$name-p99]} ms"
  done
}

# ---------------------------------------------------------------------------------------------
# The real daemon with 1,000 endpoints: RSS, and the time of /metrics once all have results.

DAEMON_PORT=""
write_daemon_config() {
  local interval=$1 file=$2 i
  {
    cat <<EOF
[daemon]
listen = "127.0.0.1:$DAEMON_PORT"
log_level = "warning"
[defaults]
interval = "$interval"
ca_file = "$CA_FILE"
[account]
user = "$USER"
password_file = "$PASSWORD_FILE"
EOF
    for ((i = 1; i <= DAEMON_ENDPOINTS / 4; i++)); do
      printf '[[host]]\nname = "h%04d.bench.localhost"\naddresses = ["127.0.0.1"]\n' "$i"
      printf '[[host.endpoint]]\nservice = "%s"\nport = %s\nsecurity = "%s"\nauth = "none"\n' \
        imap "$IMAP_STARTTLS_PORT" starttls imap "$IMAPS_PORT" tls \
        smtp "$SUBMISSION_PORT" starttls smtp "$SMTPS_PORT" tls
    done
  } >"$file"
  "$MAILPROBED" validate --config "$file" >/dev/null || die "mailprobed refuses $file"
}

start_daemon() {
  stop_pid "$DAEMON_PID"
  DAEMON_PORT=$(free_port)
  write_daemon_config "$1" "$WORK/daemon-$1.toml"
  "$MAILPROBED" run --config "$WORK/daemon-$1.toml" >>"$WORK/daemon.log" 2>&1 &
  DAEMON_PID=$!
  wait_http "http://127.0.0.1:$DAEMON_PORT/healthz" || die "mailprobed did not start:" \
    "$(tail -n 5 "$WORK/daemon.log")"
}

scrape() { curl -fs --max-time 10 "http://127.0.0.1:$DAEMON_PORT/metrics"; }
runs_sum() { scrape | awk '/^mailprobe_endpoint_runs_total\{/ { n += $NF } END { print n + 0 }'; }
pid_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# CPU ticks of every thread of PID except the main one (the loop): the HTTP server's.
http_ticks() {
  local t total=0
  for t in /proc/"$1"/task/*; do
    [[ ${t##*/} == "$1" ]] && continue
    total=$((total + $(awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
# Endpoints with at least one completed run.
endpoints_run() { scrape | grep -c '^mailprobe_endpoint_runs_total{.*} [1-9]' || true; }

declare -A DAEMON
measure_daemon() {
  # Long intervals: few runs during the measurement; what 1,000 configured endpoints cost.
  start_daemon 1h
  sleep 5
  DAEMON[idle-rss]=$(pid_kib "$DAEMON_PID" VmRSS)
  # Short intervals: every endpoint has a result (the initial spread is one interval), and,
  # in the full run, the daemon is past its first minute (a TLS version scan of every TLS
  # endpoint happens within it).
  start_daemon 20s
  local started=$SECONDS deadline=$((SECONDS + 180)) n=0
  while ((SECONDS < deadline)); do
    n=$(endpoints_run)
    ((n >= DAEMON_ENDPOINTS && SECONDS - started >= DAEMON_SETTLE_SECONDS)) && break
    sleep 5
  done
  DAEMON[with-results]=$n
  DAEMON[age]=$((SECONDS - started))
  DAEMON[busy-rss]=$(pid_kib "$DAEMON_PID" VmRSS)
  # The daemon's own CPU per probe, between two scrapes (which are not counted).
  local r0 r1 c0 c1 hz
  hz=$(getconf CLK_TCK)
  DAEMON[probe-ms]="n/a (quick)"
  if ((DAEMON_CPU_SECONDS > 0)); then
    r0=$(runs_sum)
    c0=$(pid_ticks "$DAEMON_PID")
    sleep "$DAEMON_CPU_SECONDS"
    c1=$(pid_ticks "$DAEMON_PID")
    r1=$(runs_sum)
    DAEMON[probe-ms]="$(calc "1000 * ($c1 - $c0) / $hz / ($r1 - $r0)" 3) ms"
  fi
  # /metrics: curl's wall time, and the CPU of the HTTP threads (every thread but the loop's).
  # curl keeps nothing (Prometheus parses in memory; writing the 10 MB to a file costs curl
  # ~20 ms of its own on this machine); one more scrape, untimed, is kept for its size.
  local times=() i t h0 h1
  h0=$(http_ticks "$DAEMON_PID")
  for ((i = 0; i < METRICS_SCRAPES; i++)); do
    t=$(curl -fs --max-time 10 -o /dev/null -w '%{time_total}' \
      "http://127.0.0.1:$DAEMON_PORT/metrics")
    times+=("$(calc "1000 * $t" 2)")
    sleep 0.2
  done
  h1=$(http_ticks "$DAEMON_PID")
  DAEMON[metrics-cpu-ms]=$(calc "1000 * ($h1 - $h0) / $hz / $METRICS_SCRAPES" 1)
  DAEMON[metrics-ms]=$(median "${times[@]}")
  DAEMON[metrics-max-ms]=$(printf '%s\n' "${times[@]}" | sort -g | tail -n1)
  scrape >"$WORK/metrics.txt"
  DAEMON[metrics-bytes]=$(wc -c <"$WORK/metrics.txt")
  # Every endpoint's probe must work, as every other tool's: the figures are for success.
  DAEMON[up]=$(grep -c '^mailprobe_endpoint_up{.*} 1$' "$WORK/metrics.txt" || true)
  DAEMON[metrics-series]=$(grep -vc '^#' "$WORK/metrics.txt" || true)
  DAEMON[after-rss]=$(pid_kib "$DAEMON_PID" VmRSS)
  DAEMON[hwm]=$(pid_kib "$DAEMON_PID" VmHWM)
  raw "daemon endpoints=$DAEMON_ENDPOINTS with_results=$n up=${DAEMON[up]}" \
    "idle_rss_kib=${DAEMON[idle-rss]}" \
    "age_s=${DAEMON[age]} cpu_per_probe=${DAEMON[probe-ms]// /}" \
    "metrics_http_cpu_ms=${DAEMON[metrics-cpu-ms]}" \
    "busy_rss_kib=${DAEMON[busy-rss]} after_rss_kib=${DAEMON[after-rss]} hwm_kib=${DAEMON[hwm]}" \
    "metrics_ms=${times[*]} metrics_bytes=${DAEMON[metrics-bytes]}" \
    "metrics_series=${DAEMON[metrics-series]}"
  stop_pid "$DAEMON_PID"
  DAEMON_PID=""
  log "daemon, $DAEMON_ENDPOINTS endpoints: RSS ${DAEMON[idle-rss]} KiB (idle)," \
    "${DAEMON[after-rss]} KiB (all with results); /metrics ${DAEMON[metrics-ms]} ms"
}

# /metrics at 1,000 endpoints in-process: CPU of one render, without the network, the loop or
# the machine's load (bench/metrics_bench.cpp): streamed (as served), whole, and prometheus-cpp's.
declare -A RENDER
measure_render() {
  local line way
  while read -r line; do
    raw "$line"
    way=$(kv "$line" way)
    RENDER[$way-ms]=$(kv "$line" cpu_ms_median)
    RENDER[$way-hwm]=$(kv "$line" hwm_growth_kib)
    RENDER[$way-bytes]=$(kv "$line" bytes)
  done < <("$METRICS_BENCH" --endpoints "$DAEMON_ENDPOINTS" --rounds "$RENDER_ROUNDS")
}

# ---------------------------------------------------------------------------------------------
# Instructions per probe (valgrind --tool=callgrind): the same count whatever else the machine
# does. Each figure is the slope between a short and a long run (Ir(long) - Ir(short)) /
# (n(long) - n(short)), so that start-up (loading the CA file, the TLS context) cancels out:
# probe_bench probe and greeting with INSTR_PROBES/5 and INSTR_PROBES probes; s_time -new,
# which runs for a time, not a count, for 3 s and 12 s (under callgrind, a few dozen and a
# few hundred handshakes).

declare -A INSTR
# callgrind_run NAME COMMAND...: runs COMMAND under callgrind; prints "IR STDOUT" (stdout on one
# line) of the run.
callgrind_run() {
  local name=$1 out
  shift
  out=$WORK/callgrind.$name
  valgrind --tool=callgrind --callgrind-out-file="$out.cg" "$@" >"$out.stdout" 2>"$out.log" || true
  local ir
  ir=$(sed -n 's/^summary: //p' "$out.cg" 2>/dev/null)
  [[ -n $ir ]] || die "callgrind of $name gave no count: $(tail -n 5 "$out.log")"
  echo "$ir $(tr '\n' ' ' <"$out.stdout")"
}
# instr_slope NAME N1 N2 COMMAND-WITH-@N@: instructions per probe between N1 and N2 probes.
instr_slope() {
  local name=$1 n1=$2 n2=$3 ir1 ir2 rest
  shift 3
  read -r ir1 rest < <(callgrind_run "$name-$n1" "${@//@N@/$n1}")
  local failed1 failed2
  failed1=$(kv "$rest" failed)
  read -r ir2 rest < <(callgrind_run "$name-$n2" "${@//@N@/$n2}")
  failed2=$(kv "$rest" failed)
  # A failed probe (failed=N in the raw lines) makes the run's exit status 1, as elsewhere.
  raw "callgrind $name probes=$n1 ir=$ir1 probes=$n2 ir=$ir2 failed=$((${failed1:-1} + ${failed2:-1}))"
  calc "($ir2 - $ir1) / ($n2 - $n1)" 0
}
# stime_slope NAME PORT: instructions per s_time -new handshake.
stime_slope() {
  local name=$1 port=$2 t ir out n points=()
  for t in 3 12; do
    read -r ir out < <(callgrind_run "$name-s_time-$t" openssl s_time -connect "127.0.0.1:$port" \
      -new -time "$t" -CAfile "$CA_FILE" -verify 2)
    n=$(sed -n 's/.* \([0-9][0-9]*\) connections in [0-9.]*s;.*/\1/p' <<<" $out" | head -n1)
    [[ -n $n && $n -gt 0 ]] || die "s_time under callgrind made no connection: $out"
    raw "callgrind $name s_time seconds=$t connections=$n ir=$ir"
    points+=("$n" "$ir")
  done
  calc "(${points[3]} - ${points[1]}) / (${points[2]} - ${points[0]})" 0
}
measure_instructions() {
  local kind n1=$((INSTR_PROBES / 5)) n2=$INSTR_PROBES name
  for name in imaps smtps; do
    INSTR[$name-stime]=$(stime_slope "$name" "$(port_of "$name")")
  done
  for kind in imap-starttls smtp-starttls; do
    INSTR[$kind-greeting]=$(instr_slope "$kind-greeting" "$n1" "$n2" "$BENCH" greeting \
      --port "$(port_of "$kind")" --service "$(service_of "$kind")" --count @N@ --max-seconds 600)
  done
  for kind in "${KINDS[@]}"; do
    INSTR[$kind-floor]=${INSTR[$([[ $kind == imap* ]] && echo imaps || echo smtps)-stime]}
    if [[ $kind == *-starttls ]]; then
      INSTR[$kind-floor]=$((INSTR[$kind-floor] + INSTR[$kind-greeting]))
    fi
    INSTR[$kind-mp]=$(instr_slope "$kind" "$n1" "$n2" "$BENCH" probe \
      --target "$kind=$(port_of "$kind")" --count @N@ --warmup 0 --concurrency "$CONCURRENCY" \
      --ca-file "$CA_FILE" --max-seconds 600)
    INSTR[$kind-ratio]=$(calc "${INSTR[$kind-mp]} / ${INSTR[$kind-floor]}" 4)
    log "$kind: $(calc "${INSTR[$kind-mp]} / 1e6" 2) M instructions per probe," \
      "floor $(calc "${INSTR[$kind-floor]} / 1e6" 2) M, ratio ${INSTR[$kind-ratio]}"
  done
}

# ---------------------------------------------------------------------------------------------
# Run everything.

T0=$SECONDS
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
write_blackbox_config
start_blackbox
ALL_STEPS=(paired blackbox resumption saturation drift daemon render)
((INSTR_PROBES > 0)) && ALL_STEPS+=(instructions)
for step in "${ALL_STEPS[@]}"; do
  [[ -z $STEPS || ,$STEPS, == *,$step,* ]] || continue
  t=$SECONDS
  load=$(cut -d' ' -f1 /proc/loadavg)
  "measure_$step"
  raw "step $step seconds=$((SECONDS - t)) load_before=$load load_after=$(cut -d' ' -f1 /proc/loadavg)"
done
RUNTIME=$((SECONDS - T0))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
log "measured in ${RUNTIME}s"

# A partial run (--steps): the figures of the other steps are empty.
[[ -z $STEPS ]] || set +u
MP_FAILED=0
grep -q ' failed=[1-9]' "$RAW" && MP_FAILED=1
if [[ -z $STEPS || ,$STEPS, == *,daemon,* ]] && ((DAEMON[up] != DAEMON_ENDPOINTS)); then
  MP_FAILED=1
  log "the daemon had ${DAEMON[up]} of its $DAEMON_ENDPOINTS endpoints up"
fi

# ---------------------------------------------------------------------------------------------
# The report.

yesno() { awk "BEGIN { exit !($1) }" && echo "**met**" || echo "**missed**"; }
version_of() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
kib_mib() { calc "$1 / 1024" 1; }

{
  echo "# Benchmarks: mailprobed, blackbox_exporter and the TLS handshake floor"
  echo
  echo "Generated by \`$COMMAND\` on $(date -u +%Y-%m-%dT%H:%MZ) in ${RUNTIME} s"
  if [[ $QUICK == yes ]]; then
    echo "(quick mode: $KIND_PROBES probes per kind and tool, one repetition)."
  else
    echo "($KIND_PROBES probes per kind and tool; mailprobed and the floor in $PAIRS pairs, the"
    echo "other figures medians of $REPEATS repetitions)."
  fi
  echo
  echo "## Machine"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| CPU | $(nproc) × $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1) |"
  echo "| kernel | $(uname -r) |"
  echo "| load average (1, 5, 15 min) before / after | $LOAD_BEFORE / $LOAD_AFTER |"
  echo "| OS | Debian $(cat /etc/debian_version) |"
  echo "| OpenSSL | $(openssl version | cut -d' ' -f2) |"
  echo "| libuv | $(version_of libuv1) |"
  echo "| prometheus-blackbox-exporter | $(version_of prometheus-blackbox-exporter) |"
  echo "| Dovecot / Postfix | $(version_of dovecot-core) / $(version_of postfix) |"
  echo "| mailprobed | $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (uncommitted changes)'), ${BUILD_TYPE:-?} build |"
  echo
  echo "The machine is shared: the servers (Dovecot forks an imap-login per connection, Postfix an"
  echo "smtpd) run on the same cores. Every cost below is therefore **CPU time of the prober"
  echo "process alone** (getrusage for probe_bench and s_time, /proc/PID/stat for the exporter),"
  echo "not wall time; wall rates are given for information only."
  echo
  echo "## Client CPU per probe"
  echo
  echo "Conversation: greeting, capabilities, STARTTLS (on the STARTTLS kinds), full TLS handshake"
  echo "with chain and host name verification, capabilities again, LOGOUT/QUIT; no login."
  echo "$CONCURRENCY probes in flight for both tools. Floor: \`openssl s_time -new\` on the"
  echo "implicit-TLS port of the same server, verifying the chain against the same CA file"
  echo "(\`-CAfile\`, \`-verify\`; s_time checks no host name, the probes do), plus, for"
  echo "STARTTLS, a bare connect + greeting read. mailprobed takes its TLS context from the"
  echo "cache the daemon uses (one per distinct TLS options). The floor and mailprobed run in"
  echo "pairs, one right after the other ($PAIRS pairs per kind): the ratio is the median of the"
  echo "pairs' ratios, so that a busy moment of the machine weighs on both sides of a pair."
  echo
  echo "| kind | floor ms | mailprobed ms | ratio to floor (median of pairs) | blackbox ms | mailprobed / blackbox |"
  echo "|---|---|---|---|---|---|"
  for kind in "${KINDS[@]}"; do
    printf '| %s | %s | %s | %s× | %s | %s× |\n' "$kind" "${FLOOR_MS[$kind]}" "${MP_MS[$kind]}" \
      "$(calc "${RATIO[$kind]}")" "${BB_MS[$kind]}" "$(calc "${MP_MS[$kind]} / ${BB_MS[$kind]}")"
  done
  echo
  echo "Floor parts (medians): s_time full handshake $(for kind in "${KINDS[@]}"; do
    printf '%s %s ms, ' "$kind" "${STIME_MS[$kind]}"
  done)connect + greeting imap-starttls ${GREETING_MS[imap-starttls]} ms, smtp-starttls"
  echo "${GREETING_MS[smtp-starttls]} ms."
  echo
  echo "The system (kernel) part of those CPU times, per probe, medians: $(for kind in "${KINDS[@]}"; do
    printf '%s mailprobed %s ms, s_time %s ms; ' "$kind" "${MP_SYS_MS[$kind]}" "${STIME_SYS_MS[$kind]}"
  done | sed 's/; $/./')"
  echo
  if [[ -n ${INSTR[smtps-ratio]:-} ]]; then
    echo "## Instructions per probe (valgrind --tool=callgrind)"
    echo
    echo "The same conversations, counted in instructions rather than timed: a count does not"
    echo "depend on the machine's load or on how long a process waits for the server, so it"
    echo "tells what the code costs from what waiting costs (more wake-ups, colder caches)."
    echo "callgrind counts the instructions a process runs in user space: the kernel's share"
    echo "(connect, read, write, epoll_wait; the \"sys\" part of the CPU times above) is not in it."
    echo "Each figure is the slope between a short and a long run, so that start-up cancels"
    echo "out: probe_bench with $((INSTR_PROBES / 5)) and $INSTR_PROBES probes, $CONCURRENCY in flight; \`s_time -new\`"
    echo "for 3 s and 12 s."
    echo
    echo "| kind | floor, M instructions | mailprobed, M instructions | ratio | ratio in CPU time (above) |"
    echo "|---|---|---|---|---|"
    for kind in "${KINDS[@]}"; do
      printf '| %s | %s | %s | %s× | %s× |\n' "$kind" "$(calc "${INSTR[$kind-floor]} / 1e6" 3)" \
        "$(calc "${INSTR[$kind-mp]} / 1e6" 3)" "$(calc "${INSTR[$kind-ratio]}")" \
        "$(calc "${RATIO[$kind]:-0}")"
    done
    echo
    echo "Floor parts: s_time -new handshake IMAPS $(calc "${INSTR[imaps-stime]} / 1e6" 3) M, SMTPS"
    echo "$(calc "${INSTR[smtps-stime]} / 1e6" 3) M; connect + greeting IMAP $(calc "${INSTR[imap-starttls-greeting]} / 1e6" 3) M, SMTP"
    echo "$(calc "${INSTR[smtp-starttls-greeting]} / 1e6" 3) M."
    echo
  fi
  echo "## Saturation and memory ($MEM_PROBES probes, the four kinds in turn, $SAT_CONCURRENCY in flight)"
  echo
  echo "| | mailprobed | blackbox_exporter | mailprobed / blackbox |"
  echo "|---|---|---|---|"
  echo "| CPU ms per probe | ${SAT[mp-ms]} | ${SAT[bb-ms]} | $(calc "${SAT[mp-ms]} / ${SAT[bb-ms]}")× |"
  echo "| probes/s per core of CPU | ${SAT[mp-per-core]} | ${SAT[bb-per-core]} | $(calc "${SAT[mp-per-core]} / ${SAT[bb-per-core]}")× |"
  echo "| probes/s wall (servers included, for information) | ${SAT[mp-wall]} | ${SAT[bb-wall]} | |"
  echo "| RSS idle, MiB | $(kib_mib "${SAT[mp-idle]}") | $(kib_mib "${SAT[bb-idle]}") | $(calc "${SAT[mp-idle]} / ${SAT[bb-idle]}")× |"
  echo "| RSS after $MEM_PROBES probes, MiB | $(kib_mib "${SAT[mp-rss]}") | $(kib_mib "${SAT[bb-rss]}") | $(calc "${SAT[mp-rss]} / ${SAT[bb-rss]}")× |"
  echo "| peak RSS (VmHWM), MiB | $(kib_mib "${SAT[mp-hwm]}") | $(kib_mib "${SAT[bb-hwm]}") | $(calc "${SAT[mp-hwm]} / ${SAT[bb-hwm]}")× |"
  echo
  echo "## The daemon with $DAEMON_ENDPOINTS endpoints"
  echo
  echo "\`mailprobed run\` with 250 hosts × 4 endpoints (the four kinds, auth none) against the"
  echo "loopback servers."
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| RSS, interval 1h (configured, few runs yet) | $(kib_mib "${DAEMON[idle-rss]}") MiB |"
  echo "| RSS, interval 20s, all ${DAEMON[with-results]} endpoints with a result (${DAEMON[age]} s after start), before the timed scrapes | $(kib_mib "${DAEMON[busy-rss]}") MiB |"
  echo "| RSS, after $METRICS_SCRAPES more scrapes | $(kib_mib "${DAEMON[after-rss]}") MiB (peak since start $(kib_mib "${DAEMON[hwm]}") MiB) |"
  echo "| endpoints up at the end | ${DAEMON[up]} of $DAEMON_ENDPOINTS |"
  echo "| \`/metrics\` time (curl time_total, body not kept, median of $METRICS_SCRAPES; max) | ${DAEMON[metrics-ms]} ms; ${DAEMON[metrics-max-ms]} ms |"
  echo "| \`/metrics\` CPU of the HTTP threads per scrape | ${DAEMON[metrics-cpu-ms]} ms |"
  echo "| the daemon's CPU per probe (loop and all, no scrape) | ${DAEMON[probe-ms]} |"
  echo "| \`/metrics\` size | ${DAEMON[metrics-bytes]} bytes, ${DAEMON[metrics-series]} samples |"
  echo "| one render in-process (metrics_bench, CPU): streamed as /metrics serves it | ${RENDER[streamed-ms]} ms, heap peak +$(kib_mib "${RENDER[streamed-hwm]}") MiB |"
  echo "| the same text whole in one string (an HTTP/1.0 client) | ${RENDER[direct-ms]} ms, heap peak +$(kib_mib "${RENDER[direct-hwm]}") MiB |"
  echo "| prometheus-cpp families + TextSerializer (how /metrics was first served) | ${RENDER[families-ms]} ms, heap peak +$(kib_mib "${RENDER[families-hwm]}") MiB |"
  echo
  echo "## Scheduling drift (the real Scheduler, actual minus planned start)"
  echo
  echo "| load | endpoints (interval 2 s, cap 64) | probes | most in flight | drift p50 | drift p99 | max | runs that waited for a slot | their timer's drift p50 / p99 / max (the others) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for name in busy overload; do
    echo "| $name | ${DRIFT[$name-endpoints]} | ${DRIFT[$name-probes]} (${DRIFT[$name-rate]}/s) | ${DRIFT[$name-inflight]} | ${DRIFT[$name-p50]} ms | ${DRIFT[$name-p99]} ms | ${DRIFT[$name-max]} ms | ${DRIFT[$name-waited]} | ${DRIFT[$name-timer-p50]} / ${DRIFT[$name-timer-p99]} / ${DRIFT[$name-timer-max]} ms |"
  done
  echo
  echo "busy: about 60 % of the probe rate the machine sustained at saturation; overload: twice"
  echo "that rate, so runs wait in the scheduler's queue for a free slot (by design: the drift is"
  echo "then queueing, and the cap holds). A run \"waited for a slot\" when every slot was taken"
  echo "at its planned start; the last column is the drift of the others, the timer's own"
  echo "lateness (the loop busy with other probes' events, or the process waiting for a core)."
  echo
  echo "## TLS session resumption (client CPU per connection, ms)"
  echo
  echo "| | IMAPS (Dovecot) | SMTPS (Postfix) |"
  echo "|---|---|---|"
  echo "| s_time -new, TLS 1.2 | ${RESUME[imaps-stime-new12]} | ${RESUME[smtps-stime-new12]} |"
  echo "| s_time -reuse, TLS 1.2 | ${RESUME[imaps-stime-reuse12]} | ${RESUME[smtps-stime-reuse12]} |"
  echo "| s_time -reuse, TLS 1.3 (s_time reads no ticket: never resumes) | ${RESUME[imaps-stime-reuse13]} | ${RESUME[smtps-stime-reuse13]} |"
  echo "| probe_bench handshake, full, TLS 1.3, greeting read | ${RESUME[imaps-full]} | ${RESUME[smtps-full]} |"
  echo "| probe_bench handshake, previous session offered, TLS 1.3 | ${RESUME[imaps-resumed]} (${RESUME[imaps-resumed-count]}/$RESUME_HANDSHAKES resumed) | ${RESUME[smtps-resumed]} (${RESUME[smtps-resumed-count]}/$RESUME_HANDSHAKES resumed) |"
  echo
  echo "mailprobed's whole probe (the conversation above) with \`tls_resumption = true\`: each"
  echo "probe offers the session of the endpoint's previous probe to the same address."
  echo
  echo "| kind | full handshake, ms | tls_resumption = true, ms | resumed | ratio |"
  echo "|---|---|---|---|---|"
  for kind in "${KINDS[@]}"; do
    printf '| %s | %s | %s | %s/%s | %s× |\n' "$kind" "${MP_MS[$kind]}" "${MP_RESUME_MS[$kind]}" \
      "${MP_RESUMED[$kind]}" "$KIND_PROBES" "$(calc "${MP_RESUME_MS[$kind]} / ${MP_MS[$kind]}")"
  done
  echo
  echo "## Targets"
  echo
  # worst NUM_ARRAY DEN_ARRAY: the largest ratio over the four kinds, and its kind.
  worst() {
    local -n num=$1 den=$2
    local k w=0 at=""
    for k in "${KINDS[@]}"; do
      if awk "BEGIN { exit !(${num[$k]} / ${den[$k]} > $w) }"; then
        w=$(calc "${num[$k]} / ${den[$k]}")
        at=$k
      fi
    done
    echo "$w $at"
  }
  # shellcheck disable=SC2034  # read through worst()'s nameref
  declare -A ONE=([imap-starttls]=1 [imaps]=1 [smtp-starttls]=1 [smtps]=1)
  read -r floor_worst floor_kind < <(worst RATIO ONE)
  read -r bb_worst bb_kind < <(worst MP_MS BB_MS)
  read -r floor_bb _ < <(worst FLOOR_MS BB_MS)
  echo "| target | measured | |"
  echo "|---|---|---|"
  echo "| client CPU per probe ≤ 1.1 × floor (worst kind, median of pairs) | ${floor_worst}× ($floor_kind) | $(yesno "$floor_worst <= 1.1") |"
  if [[ -n ${INSTR[smtps-ratio]:-} ]]; then
    declare -A INSTR_MP INSTR_FLOOR
    for kind in "${KINDS[@]}"; do
      # shellcheck disable=SC2034  # read through worst()'s nameref
      INSTR_MP[$kind]=${INSTR[$kind-mp]} INSTR_FLOOR[$kind]=${INSTR[$kind-floor]}
    done
    read -r instr_worst instr_kind < <(worst INSTR_MP INSTR_FLOOR)
    echo "| the same in user-space instructions (callgrind; worst kind) | ${instr_worst}× ($instr_kind) | $(yesno "$instr_worst <= 1.1") |"
  fi
  echo "| client CPU per probe ≤ 0.5 × blackbox (worst kind) | ${bb_worst}× ($bb_kind; the floor itself: ${floor_bb}×) | $(yesno "$bb_worst <= 0.5") |"
  echo "| RSS ≤ 0.5 × blackbox after $MEM_PROBES probes | $(calc "${SAT[mp-rss]} / ${SAT[bb-rss]}")× | $(yesno "${SAT[mp-rss]} <= 0.5 * ${SAT[bb-rss]}") |"
  echo "| RSS < 20 MiB with $DAEMON_ENDPOINTS endpoints (all with results, after the scrapes) | $(kib_mib "${DAEMON[after-rss]}") MiB (peak since start $(kib_mib "${DAEMON[hwm]}") MiB) | $(yesno "${DAEMON[after-rss]} < 20480") |"
  echo "| \`/metrics\` < 50 ms at $DAEMON_ENDPOINTS endpoints | ${DAEMON[metrics-ms]} ms wall (${DAEMON[metrics-cpu-ms]} ms CPU) | $(yesno "${DAEMON[metrics-ms]} < 50") |"
  echo "| drift p99 < 10 ms (busy) | ${DRIFT[busy-p99]} ms (${DRIFT[busy-waited]} runs waited for a slot; the timer alone: ${DRIFT[busy-timer-p99]} ms) | $(yesno "${DRIFT[busy-p99]} < 10") |"
  echo
  if ((MP_FAILED || BB_FAILED)); then
    echo "**Some probes failed: the comparison does not hold** (see the raw lines)."
    echo
  fi
  echo "## Raw lines"
  echo
  echo '```'
  cat "$RAW"
  echo '```'
} >"$OUT.tmp"
# Hand-written analysis below the marker survives a new run.
MARKER='<!-- analysis: written by hand, kept by bench/run.sh -->'
if [[ -f $OUT ]] && grep -qxF "$MARKER" "$OUT"; then
  { echo; awk -v m="$MARKER" 'found || $0 == m { found = 1; print }' "$OUT"; } >>"$OUT.tmp"
fi
mv "$OUT.tmp" "$OUT"
log "report: $OUT"
((MP_FAILED == 0 && BB_FAILED == 0))
