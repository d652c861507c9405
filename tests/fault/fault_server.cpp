#include "tests/fault/fault_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>

#include "tests/fakes/test_certs.h"

namespace mailprobe::testing {

using Clock = std::chrono::steady_clock;

// A script is a list of steps played in order on each connection. A step that cannot complete
// yet (no command line read, the next slow byte not due, the socket full) waits for the loop.
struct FaultServer::Step {
  enum class Kind {
    Send,        // `bytes`, "{tag}" replaced by the tag of the last command read (IMAP)
    SendSlowly,  // `bytes`, one byte per slow_interval
    Fill,        // `count` copies of bytes[0], written as the client reads them
    Repeat,      // `bytes` forever, written as the client reads them
    ReadLine,    // wait for one command line from the client
    ReadRecord,  // wait for one whole TLS record (the ClientHello) and drop it
    TlsAccept,   // run a server handshake; later sends are encrypted. A failed handshake
                 // flushes what OpenSSL queued (its alert) and closes.
    Close,       // FIN once everything queued is written
    Reset,       // RST now (SO_LINGER 0)
    Hold,        // say nothing more; the connection stays open until the client closes it
    // Ask the client to renegotiate (TLS 1.2); the new handshake runs as its bytes are read.
    Renegotiate,
    // Play one login (EchoLogin): read the command, send the challenges its mechanism needs,
    // read the answers, then refuse it, quoting every line read for it.
    EchoLogin,
  };
  Kind kind;
  std::string bytes;
  size_t count = 0;
};

struct FaultServer::Peer {
  int fd = -1;
  size_t step = 0;
  size_t progress = 0;  // SendSlowly: bytes sent; Fill: bytes queued
  std::optional<Clock::time_point> wake_at;
  std::string in;  // client bytes not yet used by a step (plaintext once TLS is up)
  std::string out;
  size_t out_at = 0;
  std::string tag;
  std::unique_ptr<TlsServerEngine> tls;
  bool tls_up = false;
  bool renegotiating = false;           // asked, the client's new handshake not yet complete
  std::string echo;                     // EchoLogin: the lines of the login read so far
  std::vector<std::string> challenges;  // EchoLogin: still to send, one per line to read
  bool close_when_flushed = false;
  bool dead = false;

  size_t pending() const { return out.size() - out_at; }
};

namespace {

using Kind = FaultServer::Step::Kind;
using Step = FaultServer::Step;

// How much a Fill or Repeat step keeps queued: the client's reading paces the server, and
// neither side holds more than this of the stream at once.
constexpr size_t kChunk = 64 * 1024;
constexpr size_t kHugeLine = 1024 * 1024;
// A client that sends more than this without a line end is not our probe.
constexpr size_t kMaxInput = 1024 * 1024;

Step send(std::string bytes) {
  return {Kind::Send, std::move(bytes)};
}
Step step(Kind kind) {
  return {kind, {}};
}

// Deterministic bytes that are neither text nor TLS: NUL, 8-bit, control bytes, a few LFs.
std::string garbage(size_t n) {
  std::string out(n, '\0');
  uint32_t x = 0x9e3779b9u;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<char>(x >> 24);
  }
  out[0] = '\0';
  out[n / 2] = '\n';
  out[n - 1] = '\n';
  return out;
}

std::string greeting(FaultProtocol p) {
  return p == FaultProtocol::Smtp ? "220 fault.test ESMTP mailprobed fault server\r\n"
                                  : "* OK mailprobed fault server ready\r\n";
}

// The whole answer to EHLO / CAPABILITY, STARTTLS advertised, no AUTH before TLS.
std::string capabilities(FaultProtocol p) {
  return p == FaultProtocol::Smtp
             ? "250-fault.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n"
               "250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n"
             : "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n{tag} OK done\r\n";
}

std::string startTlsOk(FaultProtocol p) {
  return p == FaultProtocol::Smtp ? "220 2.0.0 Ready to start TLS\r\n"
                                  : "{tag} OK Begin TLS negotiation now\r\n";
}

// The answer to QUIT / LOGOUT.
std::string goodbye(FaultProtocol p) {
  return p == FaultProtocol::Smtp ? "221 2.0.0 Bye\r\n" : "* BYE logging out\r\n{tag} OK done\r\n";
}

// The whole answer to EHLO / CAPABILITY once a login may be made.
std::string loginCapabilities(FaultProtocol p) {
  return p == FaultProtocol::Smtp
             ? "250-fault.test\r\n250-AUTH PLAIN LOGIN CRAM-MD5\r\n250 8BITMIME\r\n"
             : "* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=LOGIN AUTH=CRAM-MD5\r\n"
               "{tag} OK done\r\n";
}

// The challenges a login command asks for before the client has said everything: "AUTH LOGIN"
// wants the user and the password, "AUTH PLAIN" without an initial response the PLAIN message,
// CRAM-MD5 its response; IMAP LOGIN and an initial response need none.
std::vector<std::string> loginChallenges(FaultProtocol p, std::string_view command) {
  std::vector<std::string> words;
  for (size_t at = 0; at < command.size();) {
    size_t end = std::min(command.find(' ', at), command.size());
    words.emplace_back(command.substr(at, end - at));
    at = end + 1;
  }
  // SMTP: AUTH <mechanism> [initial]; IMAP: <tag> AUTHENTICATE <mechanism> [initial].
  const size_t m = p == FaultProtocol::Smtp ? 1 : 2;
  const std::string verb = p == FaultProtocol::Smtp ? "AUTH" : "AUTHENTICATE";
  if (words.size() <= m || words[m - 1] != verb) {
    return {};  // IMAP LOGIN, or not a login command at all: refuse it at once
  }
  const std::string prefix = p == FaultProtocol::Smtp ? "334 " : "+ ";
  const std::string user = prefix + "VXNlcm5hbWU6";      // "Username:"
  const std::string password = prefix + "UGFzc3dvcmQ6";  // "Password:"
  const bool initial = words.size() > m + 1;
  const std::string& mechanism = words[m];
  if (mechanism == "PLAIN") {
    return initial ? std::vector<std::string>{} : std::vector<std::string>{prefix};
  }
  if (mechanism == "LOGIN") {
    return initial ? std::vector<std::string>{password} : std::vector<std::string>{user, password};
  }
  if (mechanism == "CRAM-MD5") {
    return {prefix + "PDE4OTYuNjk3MTcwOTUyQGZhdWx0LnRlc3Q+"};  // "<1896.697170952@fault.test>"
  }
  return {};
}

// A temporary failure (SMTP 454, IMAP [UNAVAILABLE]): the probe reports it as auth_failed with
// the server's words, but its login gate does not count it as a refused password (AuthGate), so
// every mechanism, and every endpoint of the account, still gets its login quoted back.
std::string loginRefusal(FaultProtocol p, const std::string& echo) {
  return p == FaultProtocol::Smtp
             ? "454 4.7.0 Authentication failed for " + echo + "\r\n"
             : "{tag} NO [UNAVAILABLE] Authentication failed for " + echo + "\r\n";
}

// What a man in the middle slips in after the STARTTLS reply: a forged capability list.
std::string injected(FaultProtocol p) {
  return p == FaultProtocol::Smtp ? "250-fault.test\r\n250 AUTH PLAIN LOGIN\r\n"
                                  : "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n";
}

// Up to the point where a client sends its ClientHello: greeting, EHLO or CAPABILITY and its
// answer, STARTTLS and its positive reply.
std::vector<Step> toStartTls(FaultProtocol p) {
  return {send(greeting(p)), step(Kind::ReadLine), send(capabilities(p)), step(Kind::ReadLine),
          send(startTlsOk(p))};
}

// After the greeting: read the capability command, then an endless reply to it.
std::vector<Step> endless(FaultProtocol p) {
  if (p == FaultProtocol::Smtp) {
    return {step(Kind::ReadLine),
            send("250-fault.test\r\n"),
            {Kind::Repeat, "250-X-ENDLESS this reply has no last line\r\n"}};
  }
  return {step(Kind::ReadLine), {Kind::Repeat, "* OK [ALERT] untagged data with no end\r\n"}};
}

std::vector<Step> scriptFor(const FaultOptions& o) {
  const FaultProtocol p = o.protocol;
  std::vector<Step> s;
  auto append = [&s](std::vector<Step> more) {
    s.insert(s.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  };
  bool tls_fault = o.fault == Fault::TlsAlert || o.fault == Fault::TlsAlertProtocolVersion ||
                   o.fault == Fault::TlsVersionRefused || o.fault == Fault::TlsGarbage ||
                   o.fault == Fault::TlsStall || o.fault == Fault::EndlessReplyOverTls ||
                   o.fault == Fault::EchoLogin;
  if (tls_fault && o.via_starttls) {
    append(toStartTls(p));
  }
  switch (o.fault) {
    case Fault::Silent:
      append({step(Kind::Hold)});
      break;
    case Fault::SlowGreeting:
      append({{Kind::SendSlowly, greeting(p)}, step(Kind::Hold)});
      break;
    case Fault::HugeLine:
      append({{Kind::Fill, "A", kHugeLine}, send("\r\n"), step(Kind::Hold)});
      break;
    case Fault::Garbage:
      append({send(garbage(512)), step(Kind::Hold)});
      break;
    case Fault::CloseMidReply: {
      std::string caps = capabilities(p);
      append({send(greeting(p)), step(Kind::ReadLine), send(caps.substr(0, caps.size() / 2)),
              step(Kind::Close)});
      break;
    }
    case Fault::ResetOnAccept:
      append({step(Kind::Reset)});
      break;
    case Fault::ResetMidConversation:
      append({send(greeting(p)), step(Kind::ReadLine), step(Kind::Reset)});
      break;
    case Fault::TlsAlert:  // level fatal (2), handshake_failure (40)
      append({step(Kind::ReadRecord), send(std::string("\x15\x03\x03\x00\x02\x02\x28", 7)),
              step(Kind::Close)});
      break;
    case Fault::TlsAlertProtocolVersion:  // level fatal (2), protocol_version (70)
      append({step(Kind::ReadRecord), send(std::string("\x15\x03\x03\x00\x02\x02\x46", 7)),
              step(Kind::Close)});
      break;
    case Fault::TlsVersionRefused:
      append({step(Kind::TlsAccept)});
      break;
    case Fault::TlsGarbage:  // a handshake record of 64 bytes that are no handshake message
      append({step(Kind::ReadRecord), send(std::string("\x16\x03\x03\x00\x40", 5) + garbage(64)),
              step(Kind::Hold)});
      break;
    case Fault::TlsStall:
      append({step(Kind::ReadRecord), step(Kind::Hold)});
      break;
    case Fault::InjectSameWrite: {
      std::vector<Step> to = toStartTls(p);
      to.back().bytes += injected(p);
      append(std::move(to));
      append({step(Kind::Hold)});
      break;
    }
    case Fault::InjectLaterWrite:
      append(toStartTls(p));
      append({step(Kind::ReadRecord), send(injected(p)), step(Kind::Hold)});
      break;
    case Fault::EndlessReply:
      append({send(greeting(p))});
      append(endless(p));
      break;
    case Fault::EndlessReplyOverTls:
      append({step(Kind::TlsAccept)});
      if (!o.via_starttls) {
        append({send(greeting(p))});
      }
      append(endless(p));
      break;
    case Fault::RenegotiateOverTls:
      append({step(Kind::TlsAccept), send(greeting(p)), step(Kind::Renegotiate),
              step(Kind::ReadLine), send(capabilities(p)), step(Kind::ReadLine), send(goodbye(p)),
              step(Kind::Close)});
      break;
    case Fault::EchoLogin:
      append({step(Kind::TlsAccept)});
      if (!o.via_starttls) {
        append({send(greeting(p))});
      }
      append({step(Kind::ReadLine), send(loginCapabilities(p)), step(Kind::EchoLogin),
              step(Kind::ReadLine), send(goodbye(p)), step(Kind::Close)});
      break;
  }
  return s;
}

std::string replaceTag(std::string_view bytes, const std::string& tag) {
  std::string out(bytes);
  for (size_t at = out.find("{tag}"); at != std::string::npos; at = out.find("{tag}", at)) {
    out.replace(at, 5, tag);
    at += tag.size();
  }
  return out;
}

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("fault server: " + what + ": " + std::strerror(errno));
}

}  // namespace

std::string_view toString(Fault fault) {
  switch (fault) {
    case Fault::Silent:
      return "silent";
    case Fault::SlowGreeting:
      return "slow_greeting";
    case Fault::HugeLine:
      return "huge_line";
    case Fault::Garbage:
      return "garbage";
    case Fault::CloseMidReply:
      return "close_mid_reply";
    case Fault::ResetOnAccept:
      return "reset_on_accept";
    case Fault::ResetMidConversation:
      return "reset_mid_conversation";
    case Fault::TlsAlert:
      return "tls_alert";
    case Fault::TlsAlertProtocolVersion:
      return "tls_alert_protocol_version";
    case Fault::TlsVersionRefused:
      return "tls_version_refused";
    case Fault::TlsGarbage:
      return "tls_garbage";
    case Fault::TlsStall:
      return "tls_stall";
    case Fault::InjectSameWrite:
      return "inject_same_write";
    case Fault::InjectLaterWrite:
      return "inject_later_write";
    case Fault::EndlessReply:
      return "endless_reply";
    case Fault::EndlessReplyOverTls:
      return "endless_reply_over_tls";
    case Fault::RenegotiateOverTls:
      return "renegotiate_over_tls";
    case Fault::EchoLogin:
      return "echo_login";
  }
  return "?";
}

std::string_view toString(FaultProtocol protocol) {
  return protocol == FaultProtocol::Smtp ? "smtp" : "imap";
}

FaultServer::FaultServer(FaultOptions options) : options_(std::move(options)) {
  script_ = scriptFor(options_);
  if (options_.tls.key_pem.empty()) {
    CertOptions cert;
    cert.dns_names = {"localhost"};
    cert.ip_addresses = {"127.0.0.1"};
    KeyCert kc = makeSelfSigned(cert);
    options_.tls.key_pem = kc.key_pem;
    options_.tls.cert_pem = kc.cert_pem;
  }
  if (options_.fault == Fault::TlsVersionRefused) {
    options_.tls.min_version = TLS1_3_VERSION;
  }
  if (options_.fault == Fault::RenegotiateOverTls) {
    options_.tls.max_version = TLS1_2_VERSION;  // TLS 1.3 has no renegotiation
  }
  // Throw before the thread exists; close what was opened so far.
  auto cleanup = [this]() {
    for (int* fd : {&listen_fd_, &wake_fds_[0], &wake_fds_[1]}) {
      if (*fd >= 0) {
        ::close(*fd);
        *fd = -1;
      }
    }
  };
  if (::pipe2(wake_fds_, O_CLOEXEC | O_NONBLOCK) != 0) {
    fail("pipe2");
  }
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (::inet_pton(AF_INET, options_.address.c_str(), &a.sin_addr) != 1 ||
      (ntohl(a.sin_addr.s_addr) >> 24) != 127) {
    cleanup();
    errno = EINVAL;
    fail("not an IPv4 loopback address: " + options_.address);
  }
  socklen_t len = sizeof a;
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 ||
      ::listen(listen_fd_, 64) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    int saved = errno;
    cleanup();
    errno = saved;
    fail("cannot listen on " + options_.address);
  }
  port_ = ntohs(a.sin_port);
  thread_ = std::thread([this]() { run(); });
}

FaultServer::~FaultServer() {
  stop_ = true;
  char c = 0;
  [[maybe_unused]] ssize_t n = ::write(wake_fds_[1], &c, 1);
  thread_.join();
  for (auto& peer : peers_) {
    ::close(peer->fd);
  }
  ::close(listen_fd_);
  ::close(wake_fds_[0]);
  ::close(wake_fds_[1]);
}

void FaultServer::run() {
  std::vector<pollfd> fds;
  while (!stop_) {
    fds.clear();
    fds.push_back({wake_fds_[0], POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    int timeout = -1;
    Clock::time_point now = Clock::now();
    for (auto& peer : peers_) {
      fds.push_back({peer->fd, static_cast<short>(POLLIN | (peer->pending() ? POLLOUT : 0)), 0});
      if (peer->wake_at) {
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(*peer->wake_at - now).count();
        int wait = static_cast<int>(std::max<int64_t>(0, ms));
        timeout = timeout < 0 ? wait : std::min(timeout, wait);
      }
    }
    if (::poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) {
      return;  // cannot happen with valid descriptors; the destructor still cleans up
    }
    if (stop_) {
      return;
    }
    // Peers accepted below are not in `fds`: only the first `known` are polled this round.
    size_t known = peers_.size();
    for (size_t i = 0; i < known; ++i) {
      Peer& peer = *peers_[i];
      short ev = fds[i + 2].revents;
      if (ev & (POLLIN | POLLHUP | POLLERR)) {
        onReadable(peer);
      }
      if (!peer.dead && (ev & POLLOUT)) {
        onWritable(peer);
      }
      if (!peer.dead) {
        advance(peer);
        onWritable(peer);
      }
    }
    if (fds[1].revents & POLLIN) {
      accept();
    }
    std::erase_if(peers_, [this](const std::unique_ptr<Peer>& p) {
      if (p->dead) {
        ::close(p->fd);
        --open_;  // after the close: a test that sees 0 finds no descriptor of ours left
      }
      return p->dead;
    });
  }
}

void FaultServer::accept() {
  for (;;) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      return;
    }
    ++connections_;
    ++open_;  // before a byte is sent, so before the client can finish and look
    auto peer = std::make_unique<Peer>();
    peer->fd = fd;
    advance(*peer);
    onWritable(*peer);
    peers_.push_back(std::move(peer));
  }
}

void FaultServer::queue(Peer& peer, std::string_view bytes) {
  if (peer.tls_up) {
    peer.tls->write(bytes);
    peer.out += peer.tls->takeCiphertext();
  } else {
    peer.out.append(bytes);
  }
}

void FaultServer::onReadable(Peer& peer) {
  char buf[16384];
  ssize_t n = ::recv(peer.fd, buf, sizeof buf, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
    return;
  }
  if (n <= 0) {
    peer.dead = true;  // the client closed or reset: nothing more to play
    return;
  }
  std::string_view bytes(buf, static_cast<size_t>(n));
  if (peer.tls_up) {
    peer.tls->feedCiphertext(bytes);
    std::string plain;
    peer.tls->read(plain);
    peer.out += peer.tls->takeCiphertext();  // session tickets, alerts, a renegotiation
    peer.in += plain;
    if (peer.renegotiating && !peer.tls->renegotiationPending()) {
      peer.renegotiating = false;
      ++renegotiations_;
    }
  } else {
    peer.in.append(bytes);
  }
  if (peer.in.size() > kMaxInput) {
    peer.dead = true;
  }
}

void FaultServer::onWritable(Peer& peer) {
  while (!peer.dead && peer.pending() > 0) {
    ssize_t n =
        ::send(peer.fd, peer.out.data() + peer.out_at, peer.pending(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        break;
      }
      peer.dead = true;  // EPIPE, ECONNRESET: the client gave up, as it should
      return;
    }
    peer.out_at += static_cast<size_t>(n);
    bytes_sent_ += static_cast<uint64_t>(n);
    if (peer.pending() == 0) {
      peer.out.clear();
      peer.out_at = 0;
    }
    advance(peer);  // Fill and Repeat top the queue up as it drains
  }
  if (peer.out_at > kChunk) {
    peer.out.erase(0, peer.out_at);
    peer.out_at = 0;
  }
  if (!peer.dead && peer.close_when_flushed && peer.pending() == 0) {
    peer.dead = true;  // run() closes it: a FIN, every client byte having been read
  }
}

void FaultServer::advance(Peer& peer) {
  while (!peer.dead && !peer.close_when_flushed && peer.step < script_.size()) {
    const Step& s = script_[peer.step];
    switch (s.kind) {
      case Kind::Send:
        queue(peer, replaceTag(s.bytes, peer.tag));
        ++peer.step;
        break;
      case Kind::SendSlowly: {
        Clock::time_point now = Clock::now();
        if (peer.wake_at && now < *peer.wake_at) {
          return;
        }
        queue(peer, std::string_view(s.bytes).substr(peer.progress, 1));
        if (++peer.progress < s.bytes.size()) {
          peer.wake_at = now + options_.slow_interval;
          return;
        }
        peer.progress = 0;
        peer.wake_at.reset();
        ++peer.step;
        break;
      }
      case Kind::Fill: {
        if (peer.pending() >= kChunk) {
          return;
        }
        size_t n = std::min(kChunk, s.count - peer.progress);
        queue(peer, std::string(n, s.bytes[0]));
        peer.progress += n;
        if (peer.progress < s.count) {
          return;
        }
        peer.progress = 0;
        ++peer.step;
        break;
      }
      case Kind::Repeat: {
        // In batches of a few KiB: over TLS, one record per batch rather than per line.
        std::string batch;
        while (batch.size() < 4096) {
          batch += s.bytes;
        }
        while (peer.pending() < kChunk) {
          queue(peer, batch);
        }
        return;
      }
      case Kind::ReadLine: {
        size_t lf = peer.in.find('\n');
        if (lf == std::string::npos) {
          return;
        }
        std::string_view line(peer.in.data(), lf);
        peer.tag = std::string(line.substr(0, line.find(' ')));
        peer.in.erase(0, lf + 1);
        ++peer.step;
        break;
      }
      case Kind::ReadRecord: {
        if (peer.in.size() < 5) {
          return;
        }
        size_t length =
            (static_cast<unsigned char>(peer.in[3]) << 8) | static_cast<unsigned char>(peer.in[4]);
        if (peer.in.size() < 5 + length) {
          return;
        }
        peer.in.erase(0, 5 + length);
        ++peer.step;
        break;
      }
      case Kind::TlsAccept: {
        if (!peer.tls) {
          peer.tls = std::make_unique<TlsServerEngine>(options_.tls);
        }
        peer.tls->feedCiphertext(peer.in);
        peer.in.clear();
        TlsServerEngine::Status st = peer.tls->handshake();
        peer.out += peer.tls->takeCiphertext();
        if (st == TlsServerEngine::Status::WantIo) {
          return;
        }
        if (st == TlsServerEngine::Status::Failed) {
          peer.close_when_flushed = true;  // after the alert OpenSSL queued
          return;
        }
        peer.tls_up = true;
        peer.tls->read(peer.in);  // a client may pipeline after its Finished
        peer.out += peer.tls->takeCiphertext();
        ++peer.step;
        break;
      }
      case Kind::Close:
        peer.close_when_flushed = true;
        ++peer.step;
        return;
      case Kind::Reset: {
        linger l{1, 0};
        ::setsockopt(peer.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        peer.dead = true;  // run() closes it: with a zero linger, close() sends RST
        return;
      }
      case Kind::Hold:
        return;
      case Kind::EchoLogin: {
        size_t lf = peer.in.find('\n');
        if (lf == std::string::npos) {
          return;
        }
        std::string line = peer.in.substr(0, lf);
        peer.in.erase(0, lf + 1);
        if (!line.empty() && line.back() == '\r') {
          line.pop_back();
        }
        if (peer.echo.empty()) {
          peer.tag = line.substr(0, line.find(' '));
          peer.challenges = loginChallenges(options_.protocol, line);
          std::reverse(peer.challenges.begin(), peer.challenges.end());
        }
        peer.echo += (peer.echo.empty() ? "" : " ") + line;
        if (!peer.challenges.empty()) {
          queue(peer, peer.challenges.back() + "\r\n");
          peer.challenges.pop_back();
          break;
        }
        queue(peer, replaceTag(loginRefusal(options_.protocol, peer.echo), peer.tag));
        peer.echo.clear();
        ++peer.step;
        break;
      }
      case Kind::Renegotiate:
        if (!peer.tls->renegotiate()) {
          peer.close_when_flushed = true;
          return;
        }
        peer.renegotiating = true;
        peer.out += peer.tls->takeCiphertext();  // the HelloRequest
        ++peer.step;
        break;
    }
  }
}

}  // namespace mailprobe::testing
