#!/usr/bin/env bash
# demo.sh [BUILD_DIR]: a real Dovecot and Postfix on loopback (tests/integration/mailenv.sh) with
# a mailprobed config for them, kept running until Ctrl-C. Run as root. MAILPROBE_KEEP_MAILENV=1
# keeps the directory after the servers are stopped.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=$(realpath -m -- "${1:-$ROOT/build}")
MAILENV=$ROOT/tests/integration/mailenv.sh
MAILPROBED=$BUILD_DIR/daemon/mailprobed # started here once the config format has landed

DIR=$(mktemp -d "${TMPDIR:-/tmp}/mailprobed-demo.XXXXXX")
SLEEPER=""

cleanup() {
  trap - EXIT INT TERM
  if [[ -n $SLEEPER ]]; then kill "$SLEEPER" 2>/dev/null || true; fi
  "$MAILENV" stop "$DIR" || true
  if [[ -n ${MAILPROBE_KEEP_MAILENV:-} ]]; then
    echo "demo: kept $DIR"
  else
    rm -rf -- "$DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The mailprobed config for the demo. Placeholder: the config format is being written elsewhere;
# fill this in from etc/ once it exists. Everything it needs is in DIR/env (sourced by the caller).
write_demo_config() {
  cat >"$DIR/mailprobed.toml" <<EOF
# mailprobed demo config: TODO, written once the config format has landed.
# Servers: localhost ($VALID_IP; certificate variants on $EXPIRED_IP expired, $WRONG_HOST_IP wrong
# host, $SELF_SIGNED_IP self-signed, $MISSING_INTERMEDIATE_IP missing intermediate,
# $NOT_YET_VALID_IP not yet valid), CA $CA_FILE
# IMAP STARTTLS $IMAP_STARTTLS_PORT, IMAPS $IMAPS_PORT, SMTP $SMTP_PORT, SMTPS $SMTPS_PORT,
# submission $SUBMISSION_PORT; account $USER, password file $PASSWORD_FILE
# Probe source address: $UNTRUSTED_SOURCE_IP (outside mynetworks), $TRUSTED_SOURCE_IP (inside).
EOF
}

"$MAILENV" start "$DIR" >/dev/null
# shellcheck source=/dev/null
source "$DIR/env"
write_demo_config

echo "== mail environment in $DIR"
cat "$DIR/env"
echo
echo "== config: $DIR/mailprobed.toml (daemon: $MAILPROBED)"
echo "== try:"
echo "   curl --cacert $CA_FILE --resolve localhost:$IMAPS_PORT:127.0.0.1 \\"
echo "        imaps://localhost:$IMAPS_PORT/ --user $USER:\"\$(cat $PASSWORD_FILE)\" -X CAPABILITY"
echo "   swaks --server 127.0.0.1 --port $SMTP_PORT --local-interface $UNTRUSTED_SOURCE_IP \\"
echo "         --to x@example.com --quit-after RCPT     # Relay access denied"
echo "   $MAILENV stop-service $DIR dovecot             # an outage"
echo "== Ctrl-C stops the servers."
sleep infinity &
SLEEPER=$!
wait "$SLEEPER"
