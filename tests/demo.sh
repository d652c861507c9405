#!/usr/bin/env bash
# The demo: a real Dovecot and Postfix on loopback (tests/integration/mailenv.sh) with a
# generated CA and certificates, one terminal diagnosis with `mailprobed check`, then the daemon
# (`mailprobed run`) probing them until Ctrl-C, with its status page and metrics.
#   sudo tests/demo.sh [BUILD_DIR]
# As root it installs the Debian packages it needs and builds mailprobed first.
# MAILPROBE_KEEP_MAILENV=1 keeps the directory after the servers are stopped.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=$(realpath -m -- "${1:-$ROOT/build}")
MAILENV=$ROOT/tests/integration/mailenv.sh
MAILPROBED=$BUILD_DIR/daemon/mailprobed

if [[ $(id -u) == 0 ]]; then
  "$ROOT/tests/deps.sh"
fi
cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target mailprobed

DIR=$(mktemp -d "${TMPDIR:-/tmp}/mailprobed-demo.XXXXXX")
cleanup() {
  trap - EXIT INT TERM
  "$MAILENV" stop "$DIR" >/dev/null 2>&1 || true
  if [[ -n ${MAILPROBE_KEEP_MAILENV:-} ]]; then
    echo "demo: kept $DIR"
  else
    rm -rf -- "$DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    ss -ltnH "sport = :$port" | grep -q . || { echo "$port"; return; }
  done
}

# The config the daemon runs with: the platform's five endpoints on the loopback servers, and
# one more address whose certificate has expired, to show what a failure looks like.
write_demo_config() {
  cat >"$DIR/mailprobed.toml" <<CONF
[daemon]
listen = "127.0.0.1:$LISTEN_PORT"

[defaults]
interval = "15s"
ca_file = "$CA_FILE"
# Dovecot shows LOGINDISABLED only to clients from another address than its own.
source_address = "$UNTRUSTED_SOURCE_IP"

[account]
user = "$USER"
password_file = "$PASSWORD_FILE"

[[host]]
name = "localhost"
addresses = ["$VALID_IP"]
  [[host.endpoint]]
  service = "imap"
  port = $IMAP_STARTTLS_PORT
  security = "starttls"
  [[host.endpoint]]
  service = "imap"
  port = $IMAPS_PORT
  security = "tls"
  [[host.endpoint]]
  service = "smtp"
  port = $SMTP_PORT
  security = "starttls"
  starttls_required = false
  auth = "optional"
  [[host.endpoint]]
  service = "smtp"
  port = $SMTPS_PORT
  security = "tls"
  [[host.endpoint]]
  service = "smtp"
  port = $SUBMISSION_PORT
  security = "starttls"

[[host]]
name = "localhost"
addresses = ["$EXPIRED_IP"]
  [[host.endpoint]]
  service = "imap"
  port = $IMAPS_PORT
  security = "tls"
CONF
  write_demo_profiles >>"$DIR/mailprobed.toml"
}

# The built-in client profiles name the platform's ports (993, 143, 465, 587); the demo's
# servers listen on ports of their own. So that the verdict grid says something, the demo
# redefines each built-in (replace = true) as daemon/profiles.cpp has it, on the demo's ports.
# A platform published on other ports than the usual ones would do the same.
# profile_side incoming|outgoing PORT SECURITY CERTIFICATES TLS_VERSIONS MECHANISMS [NEXT]
profile_side() {
  echo "  [[profile.$1]]"
  echo "  port = $2"
  echo "  security = \"$3\""
  echo "  certificates = \"$4\""
  echo "  tls_versions = $5"
  echo "  mechanisms = $6"
  [[ ${7:-} == next ]] && echo "  next_mechanism_on_failure = true"
  return 0
}
# profile ID DESCRIPTION: the head of a replaced built-in.
profile() { printf '\n[[profile]]\nid = "%s"\nreplace = true\ndescription = "%s"\n' "$1" "$2"; }
write_demo_profiles() {
  local v12='["TLSv1.2", "TLSv1.3"]' v10='["TLSv1.0", "TLSv1.1"]'
  local imap='["PLAIN", "LOGIN", "LOGIN-COMMAND"]' smtp='["PLAIN", "LOGIN"]'
  profile android-guide "The platform guide's Android setup, on the demo's ports: IMAP 993 and SMTP 465, implicit TLS, any certificate accepted."
  profile_side incoming "$IMAPS_PORT" tls accept-all "$v12" '["LOGIN-COMMAND"]'
  profile_side outgoing "$SMTPS_PORT" tls accept-all "$v12" "$smtp"
  profile thunderbird "Thunderbird, on the demo's ports: 993 then 143, 465 then 587, strict certificates."
  profile_side incoming "$IMAPS_PORT" tls strict "$v12" "$imap" next
  profile_side incoming "$IMAP_STARTTLS_PORT" starttls strict "$v12" "$imap" next
  profile_side outgoing "$SMTPS_PORT" tls strict "$v12" "$smtp" next
  profile_side outgoing "$SUBMISSION_PORT" starttls strict "$v12" "$smtp" next
  profile ios-mail "iOS Mail, on the demo's ports: IMAP 993, SMTP 587 STARTTLS, strict certificates."
  profile_side incoming "$IMAPS_PORT" tls strict "$v12" "$imap"
  profile_side outgoing "$SUBMISSION_PORT" starttls strict "$v12" "$smtp"
  profile outlook "Outlook, on the demo's ports: IMAP 993, SMTP 587 STARTTLS, strict, TLS 1.2 at least."
  profile_side incoming "$IMAPS_PORT" tls strict "$v12" '["PLAIN", "LOGIN-COMMAND"]'
  profile_side outgoing "$SUBMISSION_PORT" starttls strict "$v12" '["LOGIN", "PLAIN"]'
  profile legacy-tls10 "A phone that speaks only TLS 1.0 and 1.1, on the demo's ports: it fails against servers that require TLS 1.2."
  profile_side incoming "$IMAPS_PORT" tls accept-all "$v10" '["LOGIN-COMMAND"]'
  profile_side outgoing "$SMTPS_PORT" tls accept-all "$v10" "$smtp"
}

echo "== starting Dovecot and Postfix on loopback in $DIR"
"$MAILENV" start "$DIR" >/dev/null
# shellcheck source=/dev/null
source "$DIR/env"
LISTEN_PORT=$(free_port)
write_demo_config
"$MAILPROBED" validate --config "$DIR/mailprobed.toml"

echo
echo "== mailprobed check: one diagnosis, as at a terminal"
"$MAILPROBED" check --config "$DIR/mailprobed.toml" || echo "(exit code $?: 0 ok, 1 warning, 2 critical, 3 unknown)"

echo
echo "== mailprobed run: the daemon. Open, while it runs:"
echo "   status page   http://127.0.0.1:$LISTEN_PORT/"
echo "   metrics       http://127.0.0.1:$LISTEN_PORT/metrics"
echo "   JSON status   http://127.0.0.1:$LISTEN_PORT/status.json"
echo "   an outage:    $MAILENV stop-service $DIR dovecot   (and start-service to end it)"
echo "   a reload:     kill -HUP \$(pgrep -f 'mailprobed run --config $DIR')"
echo "== Ctrl-C stops the daemon and the mail servers."
"$MAILPROBED" run --config "$DIR/mailprobed.toml" &
DAEMON=$!
trap 'kill -TERM $DAEMON 2>/dev/null; wait $DAEMON; exit 130' INT
trap 'kill -TERM $DAEMON 2>/dev/null; wait $DAEMON; exit 143' TERM
wait "$DAEMON"
