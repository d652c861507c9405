#!/usr/bin/env bash
# mailenv.sh: a private, real Dovecot (IMAP) and Postfix (SMTP) on loopback, for the integration
# tests and the demo. Everything lives under one directory DIR; several environments can run at
# once (different DIRs, ports chosen at random). Nothing listens outside 127.0.0.0/8 and ::1, and
# nothing is ever delivered outside: the only delivery agent is Postfix's virtual(8) into DIR/mail,
# every other destination goes to error(8), and master.cf has no smtp/lmtp client at all.
#
# Debian 12 packages needed:
#   dovecot-core dovecot-imapd postfix openssl iproute2 (ss) util-linux (setpriv) procps (ps)
# and, for the tests that talk to it:  swaks curl
# Must run as root (Postfix's master and Dovecot start as root and drop privileges). The system
# instances are neither used nor touched: /etc/postfix and /etc/dovecot are only read.
#
# Usage:
#   mailenv.sh start DIR              DIR absent or empty; prints and writes DIR/env
#   mailenv.sh stop DIR               idempotent; leaves DIR in place
#   mailenv.sh postconf DIR 'key = value' ...   edit the private main.cf and reload
#   mailenv.sh postconf-master DIR 'service/type/param=value' ...   edit a master.cf service's
#                                     -o parameter (postconf -P) and reload
#   mailenv.sh doveconf DIR 'key = value' ...   set top-level Dovecot settings and reload
#   mailenv.sh queue DIR              the private Postfix queue
#   mailenv.sh stop-service DIR dovecot|postfix
#   mailenv.sh start-service DIR dovecot|postfix
#   mailenv.sh logs DIR [LINES]       tails of the Dovecot and Postfix logs
#
# Layout of DIR:
#   env                 shell-sourceable KEY=VALUE (see write_env)
#   password            probe@example.org's password (0600); other-password for other@example.org
#   certs/              ca.crt and one <variant>.crt/.key per certificate variant
#   dovecot/            dovecot.conf, users (passwd-file), dovecot.log, auth-postfix (SASL socket)
#   postfix/            main.cf, master.cf, vmailbox (config_directory of the private instance)
#   postfix-spool/      queue_directory;  postfix-data/  data_directory
#   maillog             Postfix's log (postlogd)
#   mail/               maildirs: Dovecot reads, Postfix's virtual(8) delivers (owner: mail)
#
# Certificate variants, all on the same ports, chosen by the local address the client connects to:
#   127.0.0.1 (and ::1)  valid               CA-signed, SAN DNS:localhost IP:127.0.0.1 IP:::1
#   127.0.0.4            expired             CA-signed, for localhost, notAfter in 2021
#   127.0.0.5            wrong-host          CA-signed, for wrong.example.net only
#   127.0.0.6            self-signed         for localhost, not signed by the CA
#   127.0.0.7            missing-intermediate  signed by an intermediate that is not served
#   127.0.0.8            not-yet-valid       CA-signed, for localhost, notBefore 5 years ahead
# Client source addresses: 127.0.0.2 is in Postfix's mynetworks (trusted); 127.0.0.3 is not.
# Dovecot only shows LOGINDISABLED to a client whose source address differs from the address it
# connected to, so bind the client to 127.0.0.2 or 127.0.0.3 to see it.
# Dovecot's auth penalty: after a failed login, the next ones from the same client address are
# delayed (2 s, growing up to 15 s in Dovecot's source; observed here: ~6 s per failed attempt
# with the default auth_failure_delay = 2s, ~4.5 s with 0). 127.0.0.9 is in
# login_trusted_networks: no penalty, but Dovecot treats it as secured (no LOGINDISABLED,
# plaintext login before TLS), like a webmail front end. ::1 (valid certificate) only if lo has it.
set -euo pipefail

export PATH=/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}
umask 022

readonly VARIANTS=(valid expired wrong-host self-signed missing-intermediate not-yet-valid)
declare -rA VARIANT_IP=(
  [valid]=127.0.0.1 [expired]=127.0.0.4 [wrong-host]=127.0.0.5 [self-signed]=127.0.0.6
  [missing-intermediate]=127.0.0.7 [not-yet-valid]=127.0.0.8
)
readonly TRUSTED_SOURCE_IP=127.0.0.2 UNTRUSTED_SOURCE_IP=127.0.0.3 NO_PENALTY_SOURCE_IP=127.0.0.9
readonly USER_NAME=probe@example.org OTHER_USER_NAME=other@example.org
readonly LOCAL_DOMAIN=example.org
readonly READY_TIMEOUT_S=20
readonly PORT_NAMES=(IMAP_STARTTLS_PORT IMAPS_PORT SMTP_PORT SMTPS_PORT SUBMISSION_PORT)

die() {
  echo "mailenv: $*" >&2
  exit 1
}
log() { echo "mailenv: $*" >&2; }

usage() {
  sed -n '/^# Usage:/,/^#$/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# All paths derive from DIR, made absolute once.
set_paths() {
  [[ -n ${1:-} ]] || usage
  DIR=$(realpath -m -- "$1")
  CERTS=$DIR/certs
  DOVECOT_DIR=$DIR/dovecot
  DOVECOT_CONF=$DOVECOT_DIR/dovecot.conf
  DOVECOT_LOCAL=$DOVECOT_DIR/local.conf
  DOVECOT_LOG=$DOVECOT_DIR/dovecot.log
  AUTH_SOCKET=$DOVECOT_DIR/auth-postfix
  POSTFIX_CONF=$DIR/postfix
  POSTFIX_SPOOL=$DIR/postfix-spool
  POSTFIX_DATA=$DIR/postfix-data
  MAILLOG=$DIR/maillog
  MAIL_DIR=$DIR/mail
  PIDS=$DIR/pids
}

have_ipv6_loopback() {
  # ::1 on lo, without depending on ip(8).
  grep -qs '^00000000000000000000000000000001 ' /proc/net/if_inet6
}

# The addresses every service listens on, each with its certificate variant.
listen_addresses() {
  local v
  for v in "${VARIANTS[@]}"; do echo "${VARIANT_IP[$v]} $v"; done
  if [[ ${IPV6:-no} == yes ]]; then echo "::1 valid"; fi
}

# ---------------------------------------------------------------------------------------------
# Certificates, generated at run time with the openssl CLI.

write_openssl_cnf() {
  {
    cat <<EOF
# generated by mailenv.sh
[ ca ]
default_ca = test_ca

[ test_ca ]
database        = $CERTS/index.txt
new_certs_dir   = $CERTS/issued
serial          = $CERTS/serial
default_md      = sha256
default_days    = 825
policy          = policy_any
unique_subject  = no
copy_extensions = none
email_in_dn     = no

[ policy_any ]
commonName = supplied

[ req ]
distinguished_name = req_dn
prompt             = no

[ req_dn ]
CN = unused

[ ext_ca ]
basicConstraints       = critical, CA:true
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash

[ ext_intermediate ]
basicConstraints       = critical, CA:true, pathlen:0
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

EOF
    leaf_ext ext_localhost "DNS:localhost, IP:127.0.0.1, IP:::1" issued
    leaf_ext ext_wrong_host "DNS:wrong.example.net" issued
    leaf_ext ext_self_signed "DNS:localhost, IP:127.0.0.1, IP:::1" self
  } >"$CERTS/openssl.cnf"
}

# leaf_ext SECTION SUBJECT-ALT-NAMES issued|self: the extensions of a server certificate.
leaf_ext() {
  cat <<EOF

[ $1 ]
basicConstraints       = critical, CA:false
keyUsage               = critical, digitalSignature, keyEncipherment
extendedKeyUsage       = serverAuth
subjectAltName         = $2
subjectKeyIdentifier   = hash
EOF
  if [[ $3 == issued ]]; then echo "authorityKeyIdentifier = keyid"; fi
}

new_key() {
  # EC P-256 keeps start-up fast; MAILENV_KEY_ALG=rsa for RSA-2048 (slower, ~0.2 s per key).
  case ${MAILENV_KEY_ALG:-ec} in
    ec) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null ;;
    rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null ;;
    *) die "MAILENV_KEY_ALG must be ec or rsa" ;;
  esac
  chmod 0600 "$1"
}

# sign NAME CN EXTENSION ISSUER [openssl ca date options...]
sign() {
  local name=$1 cn=$2 ext=$3 issuer=$4
  shift 4
  new_key "$CERTS/$name.key"
  openssl req -new -config "$CERTS/openssl.cnf" -key "$CERTS/$name.key" -subj "/CN=$cn" \
    -out "$CERTS/$name.csr"
  openssl ca -batch -notext -config "$CERTS/openssl.cnf" -cert "$CERTS/$issuer.crt" \
    -keyfile "$CERTS/$issuer.key" -extensions "$ext" -in "$CERTS/$name.csr" \
    -out "$CERTS/$name.crt" "$@" 2>/dev/null
  rm -f "$CERTS/$name.csr"
}

make_certs() {
  mkdir -p "$CERTS/issued"
  : >"$CERTS/index.txt"
  openssl rand -hex 8 >"$CERTS/serial"
  write_openssl_cnf

  new_key "$CERTS/ca.key"
  openssl req -x509 -new -config "$CERTS/openssl.cnf" -key "$CERTS/ca.key" \
    -subj "/O=mailenv/CN=mailenv test CA $(basename "$DIR")" -days 3650 -extensions ext_ca \
    -out "$CERTS/ca.crt"

  local year
  year=$(date -u +%Y)
  sign valid localhost ext_localhost ca
  sign expired localhost ext_localhost ca -startdate 20200101000000Z -enddate 20210101000000Z
  sign not-yet-valid localhost ext_localhost ca \
    -startdate "$((year + 5))0101000000Z" -enddate "$((year + 6))0101000000Z"
  sign wrong-host wrong.example.net ext_wrong_host ca
  sign intermediate "mailenv test intermediate" ext_intermediate ca -days 3650
  sign missing-intermediate localhost ext_localhost intermediate

  new_key "$CERTS/self-signed.key"
  openssl req -x509 -new -config "$CERTS/openssl.cnf" -key "$CERTS/self-signed.key" \
    -subj "/CN=localhost" -days 825 -extensions ext_self_signed -out "$CERTS/self-signed.crt"

  # The servers read keys as root before dropping privileges; certificates are public.
  chmod 0644 "$CERTS"/*.crt
}

# ---------------------------------------------------------------------------------------------
# Users and mail storage.

# Never with a leading '-': the tests hand passwords to real clients' command lines (swaks
# --auth-password), which would take one for an option whatever the quoting (1 run in 64).
random_password() { printf 'p%s' "$(openssl rand -base64 18 | tr '+/' '-_')"; }

make_users() {
  local pw other_pw home_base=$MAIL_DIR/$LOCAL_DOMAIN
  pw=$(random_password)
  # The second user's password has a space, a double quote and a backslash: IMAP LOGIN must quote
  # or use a literal for it. No ':' (the passwd-file separator).
  other_pw="Tr1cky \"pass\" \\ $(random_password)"
  (umask 077 && printf '%s\n' "$pw" >"$DIR/password" && printf '%s\n' "$other_pw" >"$DIR/other-password")

  mkdir -p "$DOVECOT_DIR" "$MAIL_DIR"
  # passwd-file: user:password:uid:gid:gecos:home:shell:extra. uid/gid come from mail_uid/mail_gid.
  # {PLAIN} so that CRAM-MD5 works.
  (
    umask 027
    printf '%s:{PLAIN}%s::::%s::\n' "$USER_NAME" "$pw" "$home_base/probe" \
      "$OTHER_USER_NAME" "$other_pw" "$home_base/other" >"$DOVECOT_DIR/users"
  )
  chgrp dovecot "$DOVECOT_DIR/users"

  # Maildirs shared by Dovecot (reads) and Postfix's virtual(8) (delivers), owned by "mail".
  chown mail:mail "$MAIL_DIR"
  chmod 0700 "$MAIL_DIR"
  printf '%s  %s\n%s  %s\n@%s  %s\n' \
    "$USER_NAME" "$LOCAL_DOMAIN/probe/Maildir/" \
    "$OTHER_USER_NAME" "$LOCAL_DOMAIN/other/Maildir/" \
    "$LOCAL_DOMAIN" "$LOCAL_DOMAIN/catchall/Maildir/" >"$POSTFIX_CONF/vmailbox"
}

# ---------------------------------------------------------------------------------------------
# Ports.

port_is_free() {
  [[ -z $(ss -ltnH "sport = :$1" 2>/dev/null) ]]
}

pick_ports() {
  local name p used=" " tries
  for name in "${PORT_NAMES[@]}"; do
    for ((tries = 0; ; tries++)); do
      ((tries < 200)) || die "no free TCP port found in 20000-60000"
      p=$(((RANDOM << 15 | RANDOM) % 40001 + 20000))
      [[ $used == *" $p "* ]] && continue
      port_is_free "$p" && break
    done
    used+="$p "
    printf -v "$name" '%s' "$p"
  done
}

# ---------------------------------------------------------------------------------------------
# Dovecot.

write_dovecot_conf() {
  local listen="" ip v dh=""
  while read -r ip v; do listen+="${listen:+, }$ip"; done < <(listen_addresses)
  [[ -r /usr/share/dovecot/dh.pem ]] && dh="ssl_dh = </usr/share/dovecot/dh.pem"
  cat >"$DOVECOT_CONF" <<EOF
# generated by mailenv.sh: a private instance, nothing from /etc/dovecot.
instance_name = mailenv-$(basename "$DIR")
base_dir = $DOVECOT_DIR/run
state_dir = $DOVECOT_DIR/state
log_path = $DOVECOT_LOG
log_timestamp = "%Y-%m-%d %H:%M:%S "
auth_verbose = yes
protocols = imap
listen = $listen
shutdown_clients = yes

default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull

ssl = yes
ssl_cert = <$CERTS/valid.crt
ssl_key = <$CERTS/valid.key
$dh
disable_plaintext_auth = yes
auth_mechanisms = plain login cram-md5
# After a failed login Dovecot delays further logins from the same client address (see the
# header of mailenv.sh). Clients from login_trusted_networks are exempt, but also count as
# secured (no LOGINDISABLED): a vantage for tests of wrong passwords, not for LOGINDISABLED.
login_trusted_networks = $NO_PENALTY_SOURCE_IP/32

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DOVECOT_DIR/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $DOVECOT_DIR/users
}

mail_location = maildir:$MAIL_DIR/%d/%n/Maildir
mail_uid = mail
mail_gid = mail
first_valid_uid = $(id -u mail)
first_valid_gid = $(id -g mail)

service imap-login {
  inet_listener imap {
    port = $IMAP_STARTTLS_PORT
  }
  inet_listener imaps {
    port = $IMAPS_PORT
    ssl = yes
  }
}
service auth {
  unix_listener $AUTH_SOCKET {
    mode = 0660
    user = postfix
    group = postfix
  }
}
# Dovecot doubles the wait after each failed login from one address, up to 15 s (anvil's auth
# penalty). The tests fail logins on purpose, many times, from the same loopback address: keep
# the fixed auth_failure_delay a real server has, without the growing penalty.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
EOF
  while read -r ip v; do
    [[ $v == valid ]] && continue
    cat >>"$DOVECOT_CONF" <<EOF
local $ip {
  ssl_cert = <$CERTS/$v.crt
  ssl_key = <$CERTS/$v.key
}
EOF
  done < <(listen_addresses)
  # Settings changed at run time ("mailenv.sh doveconf"): last, so that they win.
  touch "$DOVECOT_LOCAL"
  echo "!include_try $DOVECOT_LOCAL" >>"$DOVECOT_CONF"
}

start_dovecot() {
  mkdir -p "$DOVECOT_DIR/run" "$DOVECOT_DIR/state" "$PIDS"
  # Dovecot's master keeps the stderr it was started with: never hand it a pipe someone waits on.
  dovecot -c "$DOVECOT_CONF" </dev/null >>"$DOVECOT_DIR/startup.log" 2>&1 || return 1
  # The daemonised master writes its pid file a moment after "dovecot" has returned.
  local pid="" i
  for ((i = 0; i < 100; i++)); do
    pid=$(head -n1 "$DOVECOT_DIR/run/master.pid" 2>/dev/null) || true
    [[ -n $pid ]] && break
    sleep 0.05
  done
  [[ -n $pid ]] || return 1
  echo "$pid" >"$PIDS/dovecot"
}

# ---------------------------------------------------------------------------------------------
# Postfix: a private instance. "postfix -c DIR/postfix" run as root needs no entry in
# alternate_config_directories of /etc/postfix/main.cf (that check is for non-root callers of
# the set-gid commands), so /etc/postfix is only read.

write_postfix_conf() {
  local inet_interfaces=127.0.0.1 inet_protocols=ipv4
  if [[ ${IPV6:-no} == yes ]]; then inet_interfaces="127.0.0.1, [::1]" inet_protocols=all; fi
  cat >"$POSTFIX_CONF/main.cf" <<EOF
# generated by mailenv.sh: a private instance, see master.cf for the listeners.
compatibility_level = 3.6
queue_directory = $POSTFIX_SPOOL
data_directory = $POSTFIX_DATA
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-mailenv
maillog_file = $MAILLOG
maillog_file_prefixes = $DIR
biff = no
readme_directory = no
append_dot_mydomain = no
smtputf8_enable = no

myhostname = localhost
mydomain = localdomain
myorigin = \$myhostname
mydestination =
inet_interfaces = $inet_interfaces
inet_protocols = $inet_protocols
mynetworks = $TRUSTED_SOURCE_IP/32
smtpd_banner = \$myhostname ESMTP mailenv

# Only the local domain is ever delivered, by virtual(8), into DIR/mail. Everything else goes
# to error(8) under the name "nowhere" (master.cf): an accepted outside message bounces, and the
# bounce can never leave either. Not "error:" itself: smtpd rejects a recipient that resolves to
# the transport named "error" already at RCPT ("550 5.1.1 Recipient address rejected"), which
# would make trusted and authenticated relaying look refused.
virtual_mailbox_domains = $LOCAL_DOMAIN
virtual_mailbox_maps = texthash:$POSTFIX_CONF/vmailbox
virtual_mailbox_base = $MAIL_DIR
virtual_uid_maps = static:$(id -u mail)
virtual_gid_maps = static:$(id -g mail)
virtual_minimum_uid = $(id -u mail)
virtual_transport = virtual
default_transport = nowhere:mailenv never delivers outside
relay_transport = nowhere:mailenv never delivers outside
local_transport = error:mailenv has no local delivery
relayhost =
alias_maps =
alias_database =

smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination

# While Dovecot's auth socket is down, smtpd with SASL dies at start-up ("fatal: no SASL
# authentication mechanisms", the client sees the connection closed after STARTTLS or the TLS
# handshake) and master throttles that service for service_throttle_time, 60 s by default: after
# Dovecot is back, mail would still fail for up to a minute. 2 s lets outage tests see recovery.
service_throttle_time = 2s

smtpd_tls_security_level = may
smtpd_tls_cert_file = $CERTS/valid.crt
smtpd_tls_key_file = $CERTS/valid.key
smtpd_tls_loglevel = 1
smtpd_sasl_auth_enable = yes
smtpd_tls_auth_only = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $AUTH_SOCKET
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
EOF

  local ip v addr cert
  {
    cat <<EOF
# generated by mailenv.sh. Nothing is chrooted (chroot column n). No smtp/lmtp/local client.
# service    type  private unpriv  chroot  wakeup  maxproc command + args
EOF
    while read -r ip v; do
      addr=$ip
      [[ $ip == *:* ]] && addr="[$ip]"
      cert="-o smtpd_tls_cert_file=$CERTS/$v.crt -o smtpd_tls_key_file=$CERTS/$v.key"
      cat <<EOF
$addr:$SMTP_PORT inet n - n - - smtpd
  -o syslog_name=postfix-mailenv/smtp-$v $cert
$addr:$SMTPS_PORT inet n - n - - smtpd
  -o syslog_name=postfix-mailenv/smtps-$v $cert
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
$addr:$SUBMISSION_PORT inet n - n - - smtpd
  -o syslog_name=postfix-mailenv/submission-$v $cert
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
EOF
    done < <(listen_addresses)
    cat <<'EOF'
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
tlsmgr     unix  -       -       n       1000?   1       tlsmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
nowhere    unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
virtual    unix  -       n       n       -       -       virtual
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
EOF
  } >"$POSTFIX_CONF/master.cf"
}

start_postfix() {
  mkdir -p "$POSTFIX_SPOOL" "$POSTFIX_DATA" "$PIDS"
  chown postfix: "$POSTFIX_DATA"
  chmod 0700 "$POSTFIX_DATA"
  # "postfix start" creates the queue directories (post-install create-missing) and waits for
  # master to initialise (master -w); it returns non-zero if master cannot bind. Its checks take
  # ~1 s; once they have passed, a restart (start-service) skips them, like "postfix quick-stop".
  if [[ ${1:-} == quick && -f $POSTFIX_SPOOL/pid/master.pid ]]; then
    touch "$POSTFIX_SPOOL/quick-start"
  fi
  postfix -c "$POSTFIX_CONF" start </dev/null >>"$DIR/postfix-start.log" 2>&1 || return 1
  local pid
  pid=$(awk 'NR == 1 { print $1 }' "$POSTFIX_SPOOL/pid/master.pid" 2>/dev/null) || return 1
  [[ -n $pid ]] || return 1
  echo "$pid" >"$PIDS/postfix"
}

# ---------------------------------------------------------------------------------------------
# Readiness, logs, stopping.

# All TCP listeners as "address:port" lines, IPv6 in brackets, as ss prints them.
listeners() { ss -ltnH | awk '{ print $4 }'; }

listening() {
  local addr=$1
  [[ $addr == *:* ]] && addr="[$addr]"
  grep -qxF "$addr:$2" <<<"$3"
}

# greets IP PORT EXPECTED-PREFIX GOODBYE: reads the first line over a plain TCP connection.
greets() {
  local fd line=""
  exec {fd}<>"/dev/tcp/$1/$2" || return 1
  IFS= read -r -t 3 -u "$fd" line || true
  { printf '%s\r\n' "$4" >&"$fd"; } 2>/dev/null || true
  exec {fd}>&-
  [[ $line == "$3"* ]]
}

wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT_S)) ip v port missing all
  while :; do
    missing=""
    all=$(listeners)
    while read -r ip v; do
      for port in "$IMAP_STARTTLS_PORT" "$IMAPS_PORT" "$SMTP_PORT" "$SMTPS_PORT" \
        "$SUBMISSION_PORT"; do
        listening "$ip" "$port" "$all" || missing+=" $ip:$port"
      done
    done < <(listen_addresses)
    if [[ -z $missing ]] &&
      greets 127.0.0.1 "$IMAP_STARTTLS_PORT" '* OK' 'a LOGOUT' &&
      greets 127.0.0.1 "$SMTP_PORT" '220 ' 'QUIT'; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      log "not ready after ${READY_TIMEOUT_S}s; not listening:${missing:- (all listening, no greeting)}"
      return 1
    fi
    sleep 0.1
  done
}

show_logs() {
  local lines=${1:-40} f
  for f in "$DOVECOT_DIR/startup.log" "$DOVECOT_LOG" "$MAILLOG" "$DIR/postfix-start.log"; do
    [[ -s $f ]] || continue
    echo "----- tail -n $lines $f"
    tail -n "$lines" "$f"
  done
}

# The pid of a master we started, only if that process still runs the expected program and is not
# a zombie (PID 1 may reap late). Our own
# record first, then the daemon's pid file (a start that failed half-way may not have recorded it).
live_pid() {
  local pid comm file
  for file in "$PIDS/$1" "$DOVECOT_DIR/run/master.pid" "$POSTFIX_SPOOL/pid/master.pid"; do
    case $1:$file in
      *:"$PIDS/$1" | dovecot:"$DOVECOT_DIR"/* | postfix:"$POSTFIX_SPOOL"/*) ;;
      *) continue ;;
    esac
    pid=$(awk 'NR == 1 { print $1 }' "$file" 2>/dev/null) || continue
    [[ $pid =~ ^[0-9]+$ ]] || continue
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
    [[ $(ps -o stat= -p "$pid") != Z* ]] || continue
    case $1:$comm in
      dovecot:dovecot | postfix:master)
        echo "$pid"
        return 0
        ;;
    esac
  done
  return 1
}

# Both masters are session leaders; their children stay in the session. After the master is
# gone, anything left in its session is a leftover of ours.
kill_session() {
  local sid=$1 sig=$2 pids
  pids=$(ps -e -o pid=,sid=,stat= | awk -v s="$sid" '$2 == s && $3 !~ /^Z/ { print $1 }')
  if [[ -n $pids ]]; then
    # shellcheck disable=SC2086
    kill "-$sig" $pids 2>/dev/null || true
  fi
}

# Zombies do not count: the masters are re-parented to PID 1, which may reap them late.
session_alive() {
  [[ -n $(ps -e -o sid=,stat= | awk -v s="$1" '$1 == s && $2 !~ /^Z/') ]]
}

# Stops one of our masters the way systemd stops a unit: SIGTERM to the master and to every
# process of its session at once (sequential shutdown takes Dovecot ~5 s, Postfix ~2 s), then
# SIGKILL to whatever is left after 5 s.
stop_master() {
  local name=$1 pid i
  pid=$(live_pid "$name") || {
    rm -f "$PIDS/$name"
    return 0
  }
  kill_session "$pid" TERM
  for ((i = 0; i < 50; i++)); do
    session_alive "$pid" || break
    sleep 0.05
  done
  if session_alive "$pid"; then
    log "$name (session $pid) did not stop in 5 s; killing it"
    kill_session "$pid" KILL
  fi
  rm -f "$PIDS/$name"
}

stop_dovecot() {
  # A zombie master (not yet reaped by PID 1) would make the next "dovecot" refuse to start.
  if live_pid dovecot >/dev/null; then
    stop_master dovecot
    rm -f "$DOVECOT_DIR/run/master.pid"
  fi
  rm -f "$PIDS/dovecot"
}
stop_postfix() { stop_master postfix; }

# ---------------------------------------------------------------------------------------------
# The env file.

write_env() {
  local name v key
  {
    echo "# mailenv $(date -u +%Y-%m-%dT%H:%M:%SZ); source me"
    printf 'DIR=%q\n' "$DIR"
    for name in "${PORT_NAMES[@]}"; do printf '%s=%q\n' "$name" "${!name}"; done
    printf 'HOST=localhost\n'
    printf 'USER=%q\nPASSWORD_FILE=%q\n' "$USER_NAME" "$DIR/password"
    printf 'OTHER_USER=%q\nOTHER_PASSWORD_FILE=%q\n' "$OTHER_USER_NAME" "$DIR/other-password"
    printf 'LOCAL_DOMAIN=%q\n' "$LOCAL_DOMAIN"
    printf 'CA_FILE=%q\n' "$CERTS/ca.crt"
    printf 'INTERMEDIATE_FILE=%q\n' "$CERTS/intermediate.crt"
    for v in "${VARIANTS[@]}"; do
      key=${v^^}
      printf '%s_IP=%q\n' "${key//-/_}" "${VARIANT_IP[$v]}"
    done
    printf 'IPV6_IP=%q\n' "$([[ $IPV6 == yes ]] && echo ::1)"
    printf 'TRUSTED_SOURCE_IP=%q\nUNTRUSTED_SOURCE_IP=%q\n' "$TRUSTED_SOURCE_IP" "$UNTRUSTED_SOURCE_IP"
    printf 'NO_PENALTY_SOURCE_IP=%q\n' "$NO_PENALTY_SOURCE_IP"
    printf 'DOVECOT_LOG=%q\nMAILLOG=%q\n' "$DOVECOT_LOG" "$MAILLOG"
    printf 'AUTH_SOCKET=%q\nPOSTFIX_CONFIG_DIR=%q\nMAIL_DIR=%q\n' "$AUTH_SOCKET" "$POSTFIX_CONF" \
      "$MAIL_DIR"
  } >"$DIR/env.tmp"
  mv "$DIR/env.tmp" "$DIR/env"
}

env_get() {
  sed -n "s/^$1=//p" "$DIR/env"
}

# ---------------------------------------------------------------------------------------------
# Subcommands.

require_root_and_tools() {
  ((EUID == 0)) || die "must run as root (Postfix's master and Dovecot start as root)"
  local t
  for t in dovecot postfix postconf openssl ss setpriv ps; do
    command -v "$t" >/dev/null || die "$t not found (see the package list at the top of $0)"
  done
  local u
  for u in dovecot dovenull postfix mail; do
    id "$u" >/dev/null 2>&1 || die "system user $u missing (packages dovecot-core, postfix)"
  done
}

check_traversable() {
  # Postfix's daemons (postfix), Dovecot's (dovecot, dovenull) and the mail user must reach DIR.
  local u
  for u in postfix dovecot dovenull mail; do
    setpriv --reuid="$u" --regid="$(id -g "$u")" --clear-groups -- test -x "$DIR" ||
      die "$DIR is not reachable by user $u: every parent directory needs o+x"
  done
}

cmd_start() {
  set_paths "$@"
  require_root_and_tools
  if [[ -e $DIR ]]; then
    [[ -d $DIR ]] || die "$DIR exists and is not a directory"
    [[ -z $(ls -A "$DIR") ]] || die "$DIR is not empty"
  fi
  mkdir -p "$DIR"
  chmod 0755 "$DIR"
  check_traversable
  mkdir -p "$DOVECOT_DIR" "$POSTFIX_CONF" "$PIDS"
  IPV6=no
  have_ipv6_loopback && IPV6=yes

  local t0=$SECONDS attempt
  make_certs
  make_users
  for attempt in 1 2 3; do
    pick_ports
    write_dovecot_conf
    write_postfix_conf
    if start_dovecot && start_postfix && wait_ready; then
      write_env
      cat "$DIR/env"
      log "started in $((SECONDS - t0))s: $DIR"
      return 0
    fi
    stop_postfix
    stop_dovecot
    if grep -qs 'in use' "$DOVECOT_DIR/startup.log" "$DOVECOT_LOG" "$MAILLOG" \
      "$DIR/postfix-start.log" && ((attempt < 3)); then
      log "a port was taken meanwhile (attempt $attempt); retrying with other ports"
      local f
      for f in "$DOVECOT_DIR/startup.log" "$DOVECOT_LOG" "$MAILLOG" "$DIR/postfix-start.log"; do
        if [[ -e $f ]]; then mv "$f" "$f.attempt$attempt"; fi
      done
      continue
    fi
    break
  done
  show_logs 40 >&2
  die "start failed; see the logs above (DIR kept: $DIR)"
}

cmd_stop() {
  set_paths "$@"
  [[ -d $DIR ]] || return 0
  stop_postfix
  stop_dovecot
}

cmd_postconf() {
  set_paths "$@"
  shift
  postconf_and_reload -e main.cf "postconf: no 'key = value' given" "$@"
}

# master.cf services are named by their listen address: "127.0.0.1:$SUBMISSION_PORT/inet/...".
cmd_postconf_master() {
  set_paths "$@"
  shift
  postconf_and_reload -P master.cf "postconf-master: no 'service/type/parameter=value' given" "$@"
}

# postconf -e (main.cf) or -P (master.cf -o parameters) on the private instance, then a reload.
postconf_and_reload() {
  local flag=$1 file=$2 missing=$3
  shift 3
  (($# > 0)) || die "$missing"
  [[ -f $POSTFIX_CONF/$file ]] || die "no private Postfix in $DIR"
  postconf -c "$POSTFIX_CONF" "$flag" "$@"
  local master
  master=$(live_pid postfix) || return 0
  reload_postfix "$master"
}

# "postfix reload" is "postsuper active" (~1.5 s, not needed here) plus SIGHUP to master. On
# SIGHUP, master logs "reload", re-reads main.cf and ends its children; idle smtpd processes of the
# old configuration would otherwise still take the next connection. Return once master has logged
# the reload and the children that existed before it are gone.
reload_postfix() {
  local master=$1 before old reloads i p pending
  # Children whose configuration decides what smtpd answers; postlogd, qmgr and pickup may live on.
  old=$(ps -o pid=,comm= --ppid "$master" |
    awk '$2 ~ /^(smtpd|trivial-rewrite|proxymap|cleanup)$/ { print $1 }' | tr '\n' ' ')
  before=$(grep -c "master\[$master\]: reload" "$MAILLOG" || true)
  kill -HUP "$master"
  for ((i = 0; i < 100; i++)); do
    reloads=$(grep -c "master\[$master\]: reload" "$MAILLOG" || true)
    if ((reloads > before)); then
      pending=""
      for p in $old; do
        [[ -d /proc/$p && $(ps -o stat= -p "$p") != Z* ]] && pending+=" $p"
      done
      [[ -z $pending ]] && return 0
    fi
    sleep 0.05
  done
  log "postconf: Postfix did not finish reloading within 5 s (still running:${pending:-?})"
  return 1
}

# Top-level Dovecot settings ("key = value") go to DIR/dovecot/local.conf, one line per key,
# included last by dovecot.conf. A setting Dovecot rejects is undone and reported.
cmd_doveconf() {
  set_paths "$@"
  shift
  (($# > 0)) || die "doveconf: no 'key = value' given"
  [[ -f $DOVECOT_CONF ]] || die "no private Dovecot in $DIR"
  local setting key
  cp "$DOVECOT_LOCAL" "$DOVECOT_LOCAL.old"
  for setting in "$@"; do
    [[ $setting =~ ^[[:space:]]*([A-Za-z0-9_]+)[[:space:]]*= ]] ||
      die "doveconf: not 'key = value': $setting"
    key=${BASH_REMATCH[1]}
    { grep -v -E "^[[:space:]]*${key}[[:space:]]*=" "$DOVECOT_LOCAL" || true; } >"$DOVECOT_LOCAL.new"
    echo "$setting" >>"$DOVECOT_LOCAL.new"
    mv "$DOVECOT_LOCAL.new" "$DOVECOT_LOCAL"
  done
  local check
  if ! check=$(doveconf -c "$DOVECOT_CONF" -n 2>&1 >/dev/null); then
    mv "$DOVECOT_LOCAL.old" "$DOVECOT_LOCAL"
    die "doveconf: Dovecot rejects the settings, left unchanged: $check"
  fi
  rm -f "$DOVECOT_LOCAL.old"
  local master
  master=$(live_pid dovecot) || return 0
  reload_dovecot "$master"
}

# SIGHUP makes Dovecot's master re-read its config and replace its processes; login processes of
# the old configuration finish what they serve but no longer accept. Return once master has
# logged the reload and the old login and auth processes are gone. An old auth process lives as
# long as a client of its sockets does: Postfix's smtpd processes keep their SASL connection
# (auth-postfix) while they idle, and would go on authenticating with the old settings; so when
# only auth is left after 0.5 s, Postfix is reloaded, which ends those smtpd processes.
reload_dovecot() {
  local master=$1 before old reloads i p pending postfix_master postfix_reloaded=no
  old=$(ps -o pid=,comm= --ppid "$master" |
    awk '$2 ~ /^(imap-login|auth|config)$/ { print $1 }' | tr '\n' ' ')
  before=$(grep -c "SIGHUP received" "$DOVECOT_LOG" || true)
  kill -HUP "$master"
  for ((i = 0; i < 100; i++)); do
    reloads=$(grep -c "SIGHUP received" "$DOVECOT_LOG" || true)
    if ((reloads > before)); then
      pending=""
      for p in $old; do
        [[ -d /proc/$p && $(ps -o stat= -p "$p") != Z* ]] && pending+=" $p"
      done
      [[ -z $pending ]] && return 0
      if ((i >= 10)) && [[ $postfix_reloaded == no ]] &&
        ! ps -o comm= -p "${pending# }" | grep -qv '^auth$' &&
        postfix_master=$(live_pid postfix); then
        postfix_reloaded=yes
        reload_postfix "$postfix_master" || return 1
      fi
    fi
    sleep 0.05
  done
  log "doveconf: Dovecot did not finish reloading within 5 s (still running:${pending:-?})"
  [[ -n ${pending:-} ]] && ps -o pid=,comm= -p "${pending# }" | sed 's/^/mailenv:   /' >&2
  return 1
}

cmd_queue() {
  set_paths "$@"
  postqueue -c "$POSTFIX_CONF" -p
}

cmd_service() {
  local action=$1
  shift
  set_paths "$@"
  local service=${2:-}
  case $action:$service in
    stop:dovecot) stop_dovecot ;;
    stop:postfix) stop_postfix ;;
    start:dovecot) live_pid dovecot >/dev/null || start_dovecot || {
      show_logs 20 >&2
      die "dovecot did not start"
    } ;;
    start:postfix) live_pid postfix >/dev/null || start_postfix quick || {
      show_logs 20 >&2
      die "postfix did not start"
    } ;;
    *) die "$action-service: service must be dovecot or postfix" ;;
  esac
  if [[ $action == start ]]; then
    local deadline=$((SECONDS + READY_TIMEOUT_S)) ports
    if [[ $service == dovecot ]]; then ports="$(env_get IMAP_STARTTLS_PORT) $(env_get IMAPS_PORT)"; else
      ports="$(env_get SMTP_PORT) $(env_get SMTPS_PORT) $(env_get SUBMISSION_PORT)"
    fi
    local p
    for p in $ports; do
      until listening 127.0.0.1 "$p" "$(listeners)"; do
        ((SECONDS < deadline)) || die "$service: port $p not listening"
        sleep 0.1
      done
    done
  fi
}

main() {
  local cmd=${1:-}
  (($# > 0)) && shift
  case $cmd in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    postconf) cmd_postconf "$@" ;;
    postconf-master) cmd_postconf_master "$@" ;;
    doveconf) cmd_doveconf "$@" ;;
    queue) cmd_queue "$@" ;;
    stop-service) cmd_service stop "$@" ;;
    start-service) cmd_service start "$@" ;;
    logs)
      set_paths "$@"
      show_logs "${2:-40}"
      ;;
    *) usage ;;
  esac
}

main "$@"
