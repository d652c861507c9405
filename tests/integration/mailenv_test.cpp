// The loopback mail environment itself (tests/integration/mailenv.sh through MailEnv): every
// port on every address greets, each address presents its certificate variant, Dovecot hides
// plaintext login from another source address, Postfix enforces the platform's relay rules, and
// the outage and reconfiguration hooks work. Plain blocking sockets and OpenSSL, plus curl and
// swaks as independent clients. Never DATA to an outside recipient.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/fakes/mail_env.h"

namespace mailprobe {
namespace {

// --- A minimal blocking client: TCP, optional source address, optional TLS, line reads. -------

class Client {
 public:
  ~Client() {
    if (ssl_)
      SSL_free(ssl_);
    if (fd_ >= 0)
      close(fd_);
  }

  // Connects to ip:port (IPv4 or IPv6 literal), bound to `source` if not empty. Returns errno on
  // failure, 0 on success.
  int connect(const std::string& ip, uint16_t port, const std::string& source = "") {
    sockaddr_storage dst{}, src{};
    socklen_t dst_len = 0, src_len = 0;
    if (!toSockaddr(ip, port, &dst, &dst_len))
      return EINVAL;
    fd_ = socket(dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0)
      return errno;
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (!source.empty()) {
      if (!toSockaddr(source, 0, &src, &src_len))
        return EINVAL;
      if (bind(fd_, reinterpret_cast<sockaddr*>(&src), src_len) != 0)
        return errno;
    }
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&dst), dst_len) != 0)
      return errno;
    return 0;
  }

  // TLS handshake over the connected socket. Verification is recorded, not enforced, so that
  // every certificate variant can be inspected: see verifyResult().
  bool startTls(const std::string& ca_file, const std::string& host = "localhost") {
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                          SSL_CTX_free);
    if (!ctx || SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr) != 1) {
      return false;
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
    ssl_ = SSL_new(ctx.get());
    SSL_set_fd(ssl_, fd_);
    SSL_set_tlsext_host_name(ssl_, host.c_str());
    SSL_set1_host(ssl_, host.c_str());
    ERR_clear_error();
    if (SSL_connect(ssl_) != 1) {
      ERR_clear_error();
      return false;
    }
    return true;
  }

  long verifyResult() const { return ssl_ ? SSL_get_verify_result(ssl_) : -1; }

  std::string peerNotAfter() const {
    X509* cert = ssl_ ? SSL_get0_peer_certificate(ssl_) : nullptr;
    if (!cert)
      return "";
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    ASN1_TIME_print(bio.get(), X509_get0_notAfter(cert));
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(n));
  }

  bool send(const std::string& line) {
    const std::string data = line + "\r\n";
    if (ssl_)
      return SSL_write(ssl_, data.data(), static_cast<int>(data.size())) > 0;
    return ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
  }

  // One line without CRLF; empty on EOF, error or timeout.
  std::string readLine() {
    for (;;) {
      const auto eol = buffer_.find('\n');
      if (eol != std::string::npos) {
        std::string line = buffer_.substr(0, eol);
        buffer_.erase(0, eol + 1);
        if (!line.empty() && line.back() == '\r')
          line.pop_back();
        return line;
      }
      char buf[4096];
      const int n =
          ssl_ ? SSL_read(ssl_, buf, sizeof buf) : static_cast<int>(recv(fd_, buf, sizeof buf, 0));
      if (n <= 0)
        return "";
      buffer_.append(buf, static_cast<size_t>(n));
    }
  }

  // An SMTP reply: all lines of a multi-line reply; the code is the first three characters.
  std::vector<std::string> smtpReply() {
    std::vector<std::string> lines;
    for (;;) {
      std::string line = readLine();
      if (line.empty())
        return lines;
      lines.push_back(line);
      if (line.size() < 4 || line[3] != '-')
        return lines;
    }
  }
  std::vector<std::string> smtp(const std::string& command) {
    send(command);
    return smtpReply();
  }

  // Sends `tag command` and returns the lines up to and including the tagged reply.
  std::vector<std::string> imap(const std::string& tag, const std::string& command) {
    send(tag + " " + command);
    std::vector<std::string> lines;
    for (;;) {
      std::string line = readLine();
      if (line.empty())
        return lines;
      lines.push_back(line);
      if (line.rfind(tag + " ", 0) == 0)
        return lines;
    }
  }

 private:
  static bool toSockaddr(const std::string& ip, uint16_t port, sockaddr_storage* ss,
                         socklen_t* len) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(ss);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(ss);
    if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons(port);
      *len = sizeof *v4;
      return true;
    }
    if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(port);
      *len = sizeof *v6;
      return true;
    }
    return false;
  }

  int fd_ = -1;
  SSL* ssl_ = nullptr;
  std::string buffer_;
};

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines)
    out += l + "\n";
  return out;
}

int code(const std::vector<std::string>& reply) {
  return reply.empty() || reply.back().size() < 3 ? 0 : std::stoi(reply.back().substr(0, 3));
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The words of an IMAP CAPABILITY line ("* CAPABILITY a b c"), padded with spaces for lookup.
std::string capabilityOf(const std::vector<std::string>& lines) {
  for (const auto& l : lines) {
    if (l.rfind("* CAPABILITY ", 0) == 0)
      return l.substr(12) + " ";
  }
  return "";
}

// Checks the words of a CAPABILITY: "X" must be there, "!X" must not. Returns what is wrong.
std::string capabilityMismatch(const std::string& caps, std::initializer_list<const char*> words) {
  std::string wrong;
  for (const char* w : words) {
    const bool absent = w[0] == '!';
    const std::string word = absent ? w + 1 : w;
    if (contains(caps, " " + word + " ") == absent)
      wrong += std::string(w) + " ";
  }
  return wrong;
}

// Runs a shell command; returns {exit status, stdout+stderr}.
std::pair<int, std::string> shell(const std::string& command) {
  std::string output;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p)
    return {-1, ""};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0)
    output.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// --- The suite: one environment for all tests. -----------------------------------------------

class MailEnvTest : public testing::MailEnvSuite {
 protected:
  // The addresses every service listens on, with the name of the certificate behind each.
  static std::vector<std::pair<std::string, std::string>> addresses() {
    std::vector<std::pair<std::string, std::string>> out;
    for (const char* key : {"VALID_IP", "EXPIRED_IP", "WRONG_HOST_IP", "SELF_SIGNED_IP",
                            "MISSING_INTERMEDIATE_IP", "NOT_YET_VALID_IP", "IPV6_IP"}) {
      const std::string ip = env()->value(key);
      if (!ip.empty())
        out.emplace_back(ip, key);
    }
    return out;
  }

  // A fresh SMTP session on ip:port from `source`, after the greeting and EHLO.
  static std::unique_ptr<Client> smtpSession(const std::string& ip, uint16_t port,
                                             const std::string& source, bool implicit_tls,
                                             std::vector<std::string>* ehlo = nullptr) {
    auto c = std::make_unique<Client>();
    if (c->connect(ip, port, source) != 0)
      return nullptr;
    if (implicit_tls && !c->startTls(env()->caFile()))
      return nullptr;
    if (code(c->smtpReply()) != 220)
      return nullptr;
    auto reply = c->smtp("EHLO probe.example.net");
    if (ehlo)
      *ehlo = reply;
    return code(reply) == 250 ? std::move(c) : nullptr;
  }

  static int rcptCode(Client& c, const std::string& recipient) {
    if (code(c.smtp("MAIL FROM:<probe@example.org>")) != 250)
      return 0;
    const int rcpt = code(c.smtp("RCPT TO:<" + recipient + ">"));
    c.smtp("RSET");
    return rcpt;
  }
};

TEST_F(MailEnvTest, EveryPortGreetsOnEveryAddress) {
  for (const auto& [ip, variant] : addresses()) {
    SCOPED_TRACE(ip + " (" + variant + ")");
    struct Port {
      uint16_t port;
      bool implicit_tls;
      const char* greeting;
    };
    for (const Port& p :
         {Port{env()->imapStarttlsPort(), false, "* OK"}, Port{env()->imapsPort(), true, "* OK"},
          Port{env()->smtpPort(), false, "220 "}, Port{env()->smtpsPort(), true, "220 "},
          Port{env()->submissionPort(), false, "220 "}}) {
      SCOPED_TRACE(p.port);
      Client c;
      ASSERT_EQ(c.connect(ip, p.port), 0);
      if (p.implicit_tls) {
        ASSERT_TRUE(c.startTls(env()->caFile()));
      }
      EXPECT_EQ(c.readLine().rfind(p.greeting, 0), 0u);
    }
  }
}

TEST_F(MailEnvTest, EachAddressPresentsItsCertificateOnEveryTlsPort) {
  struct Variant {
    const char* key;
    long verify;
  };
  const Variant variants[] = {
      {"VALID_IP", X509_V_OK},
      {"EXPIRED_IP", X509_V_ERR_CERT_HAS_EXPIRED},
      {"WRONG_HOST_IP", X509_V_ERR_HOSTNAME_MISMATCH},
      {"SELF_SIGNED_IP", X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT},
      // 20; "openssl s_client -CAfile" reports 21 (unable to verify the first certificate).
      {"MISSING_INTERMEDIATE_IP", X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY},
      {"NOT_YET_VALID_IP", X509_V_ERR_CERT_NOT_YET_VALID},
      {"IPV6_IP", X509_V_OK},
  };
  for (const Variant& v : variants) {
    const std::string ip = env()->value(v.key);
    if (ip.empty())
      continue;  // no ::1 here
    SCOPED_TRACE(std::string(v.key) + " " + ip);
    {  // implicit TLS: IMAPS and SMTPS
      for (uint16_t port : {env()->imapsPort(), env()->smtpsPort()}) {
        Client c;
        ASSERT_EQ(c.connect(ip, port), 0);
        ASSERT_TRUE(c.startTls(env()->caFile()));
        EXPECT_EQ(c.verifyResult(), v.verify)
            << port << ": " << X509_verify_cert_error_string(c.verifyResult());
      }
    }
    {  // IMAP STARTTLS
      Client c;
      ASSERT_EQ(c.connect(ip, env()->imapStarttlsPort()), 0);
      c.readLine();
      ASSERT_EQ(c.imap("a", "STARTTLS").back().rfind("a OK", 0), 0u);
      ASSERT_TRUE(c.startTls(env()->caFile()));
      EXPECT_EQ(c.verifyResult(), v.verify);
    }
    for (uint16_t port : {env()->smtpPort(), env()->submissionPort()}) {  // SMTP STARTTLS
      auto c = smtpSession(ip, port, "", false);
      ASSERT_NE(c, nullptr);
      ASSERT_EQ(code(c->smtp("STARTTLS")), 220);
      ASSERT_TRUE(c->startTls(env()->caFile()));
      EXPECT_EQ(c->verifyResult(), v.verify) << port;
    }
  }
}

TEST_F(MailEnvTest, ExpiredAddressShowsNotAfterInThePastAndCurlRefusesIt) {
  Client c;
  ASSERT_EQ(c.connect(env()->value("EXPIRED_IP"), env()->imapsPort()), 0);
  ASSERT_TRUE(c.startTls(env()->caFile()));
  EXPECT_EQ(c.peerNotAfter(), "Jan  1 00:00:00 2021 GMT");

  const auto [status, output] =
      shell("curl -sS --max-time 10 --cacert " + quoted(env()->caFile()) + " --resolve localhost:" +
            std::to_string(env()->imapsPort()) + ":" + env()->value("EXPIRED_IP") +
            " imaps://localhost:" + std::to_string(env()->imapsPort()) + "/ -X CAPABILITY");
  EXPECT_NE(status, 0) << output;
  EXPECT_TRUE(contains(output, "expired")) << output;
}

// Dovecot counts a client whose source address equals the listener's address as secure: it
// offers plaintext mechanisms before TLS. From another source address, before TLS it advertises
// LOGINDISABLED and only non-plaintext mechanisms (AUTH=CRAM-MD5), and refuses LOGIN.
TEST_F(MailEnvTest, LoginDisabledOnlyForAnotherSourceAddressBeforeTls) {
  const std::string valid = env()->value("VALID_IP");
  {
    Client c;
    ASSERT_EQ(c.connect(valid, env()->imapStarttlsPort(), valid), 0);
    c.readLine();
    const std::string caps = capabilityOf(c.imap("a", "CAPABILITY"));
    EXPECT_EQ(capabilityMismatch(caps, {"!LOGINDISABLED", "STARTTLS", "AUTH=PLAIN"}), "") << caps;
  }
  Client c;
  ASSERT_EQ(c.connect(valid, env()->imapStarttlsPort(), env()->value("TRUSTED_SOURCE_IP")), 0);
  const std::string greeting = c.readLine();
  EXPECT_TRUE(contains(greeting, " LOGINDISABLED ")) << greeting;
  std::string caps = capabilityOf(c.imap("a", "CAPABILITY"));
  EXPECT_EQ(capabilityMismatch(
                caps, {"LOGINDISABLED", "STARTTLS", "!AUTH=PLAIN", "!AUTH=LOGIN", "AUTH=CRAM-MD5"}),
            "")
      << caps;
  const auto login = c.imap("b", "LOGIN " + env()->user() + " \"" + env()->password() + "\"");
  ASSERT_FALSE(login.empty());
  EXPECT_EQ(login.back().rfind("b NO", 0), 0u) << joined(login);

  ASSERT_EQ(c.imap("c", "STARTTLS").back().rfind("c OK", 0), 0u);
  ASSERT_TRUE(c.startTls(env()->caFile()));
  caps = capabilityOf(c.imap("d", "CAPABILITY"));
  EXPECT_EQ(capabilityMismatch(
                caps, {"!LOGINDISABLED", "!STARTTLS", "AUTH=PLAIN", "AUTH=LOGIN", "AUTH=CRAM-MD5"}),
            "")
      << caps;
  const auto ok = c.imap("e", "LOGIN " + env()->user() + " \"" + env()->password() + "\"");
  ASSERT_FALSE(ok.empty());
  EXPECT_EQ(ok.back().rfind("e OK", 0), 0u) << joined(ok);
  c.imap("f", "LOGOUT");
}

TEST_F(MailEnvTest, ImapsLoginWorksWithCurlAndAWrongPasswordFails) {
  const std::string port = std::to_string(env()->imapsPort());
  const std::string base = "curl -sS --max-time 20 --cacert " + quoted(env()->caFile()) +
                           " --resolve localhost:" + port + ":" + env()->value("VALID_IP") +
                           " imaps://localhost:" + port + "/ -X CAPABILITY --user ";
  const auto [status, output] = shell(base + quoted(env()->user() + ":" + env()->password()));
  EXPECT_EQ(status, 0) << output;
  EXPECT_TRUE(contains(output, "* CAPABILITY IMAP4rev1")) << output;

  // From the address exempt from Dovecot's auth penalty, which other tests would otherwise feel.
  const auto [bad_status, bad_output] =
      shell(base + quoted(env()->user() + ":wrong") + " --interface " +
            env()->value("NO_PENALTY_SOURCE_IP"));
  EXPECT_NE(bad_status, 0) << bad_output;
}

TEST_F(MailEnvTest, SubmissionAndSmtpsAuthWorkWithSwaks) {
  const std::string common = "swaks --server " + env()->value("VALID_IP") + " --auth-user " +
                             quoted(env()->user()) + " --auth-password " +
                             quoted(env()->password()) +
                             " --from probe@example.org --quit-after RCPT --timeout 20 ";
  struct Case {
    std::string args;
    const char* what;
  };
  for (const Case& c :
       {Case{"--port " + std::to_string(env()->submissionPort()) + " -tls --auth PLAIN",
             "587 STARTTLS PLAIN"},
        Case{"--port " + std::to_string(env()->submissionPort()) + " -tls --auth LOGIN",
             "587 STARTTLS LOGIN"},
        Case{"--port " + std::to_string(env()->smtpsPort()) + " --tls-on-connect --auth PLAIN",
             "465 PLAIN"},
        Case{"--port " + std::to_string(env()->smtpsPort()) + " --tls-on-connect --auth CRAM-MD5",
             "465 CRAM-MD5"}}) {
    SCOPED_TRACE(c.what);
    for (const char* to : {"x@example.org", "x@example.com"}) {
      const auto [status, output] = shell(common + c.args + " --to " + to);
      EXPECT_EQ(status, 0) << output;
      EXPECT_TRUE(contains(output, "<~  235 ")) << output;
      EXPECT_TRUE(contains(output, "<~  250 2.1.5")) << output;
    }
  }
}

TEST_F(MailEnvTest, SubmissionPortsRefuseRecipientsWithoutAuth) {
  const std::string source = env()->value("UNTRUSTED_SOURCE_IP");
  for (bool implicit : {false, true}) {
    SCOPED_TRACE(implicit ? "465" : "587");
    std::vector<std::string> ehlo;
    auto c = smtpSession(env()->value("VALID_IP"),
                         implicit ? env()->smtpsPort() : env()->submissionPort(), source, implicit,
                         &ehlo);
    ASSERT_NE(c, nullptr);
    if (!implicit) {
      EXPECT_FALSE(contains(joined(ehlo), "AUTH")) << joined(ehlo);
      EXPECT_TRUE(contains(joined(ehlo), "STARTTLS")) << joined(ehlo);
      // smtpd_tls_security_level = encrypt: MAIL before STARTTLS is refused outright.
      EXPECT_EQ(code(c->smtp("MAIL FROM:<probe@example.org>")), 530);
      ASSERT_EQ(code(c->smtp("STARTTLS")), 220);
      ASSERT_TRUE(c->startTls(env()->caFile()));
      ehlo = c->smtp("EHLO probe.example.net");
    }
    EXPECT_TRUE(contains(joined(ehlo), "AUTH PLAIN LOGIN CRAM-MD5")) << joined(ehlo);
    EXPECT_EQ(rcptCode(*c, "probe@example.org"), 554);
    EXPECT_EQ(rcptCode(*c, "x@example.com"), 554);
    c->smtp("QUIT");
  }
}

TEST_F(MailEnvTest, Port25RelayPolicy) {
  const std::string valid = env()->value("VALID_IP");
  {  // Outside "Mes réseaux", no auth: local domain yes, outside no.
    std::vector<std::string> ehlo;
    auto c =
        smtpSession(valid, env()->smtpPort(), env()->value("UNTRUSTED_SOURCE_IP"), false, &ehlo);
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(contains(joined(ehlo), "STARTTLS")) << joined(ehlo);
    EXPECT_FALSE(contains(joined(ehlo), "AUTH")) << "AUTH before TLS: " << joined(ehlo);
    EXPECT_EQ(rcptCode(*c, "probe@example.org"), 250);
    const int outside = rcptCode(*c, "x@example.com");
    EXPECT_TRUE(outside == 454 || outside == 554) << outside;
    // STARTTLS is optional, AUTH appears after it.
    ASSERT_EQ(code(c->smtp("STARTTLS")), 220);
    ASSERT_TRUE(c->startTls(env()->caFile()));
    ehlo = c->smtp("EHLO probe.example.net");
    EXPECT_TRUE(contains(joined(ehlo), "AUTH PLAIN LOGIN CRAM-MD5")) << joined(ehlo);
    c->smtp("QUIT");
  }
  {  // From "Mes réseaux": outside recipients are relayed.
    auto c = smtpSession(valid, env()->smtpPort(), env()->value("TRUSTED_SOURCE_IP"), false);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(rcptCode(*c, "x@example.com"), 250);
    c->smtp("QUIT");
  }
  {  // swaks agrees: refused outside, accepted local.
    const std::string base = "swaks --server " + valid + " --port " +
                             std::to_string(env()->smtpPort()) + " --local-interface " +
                             env()->value("UNTRUSTED_SOURCE_IP") + " --quit-after RCPT --to ";
    const auto [status, output] = shell(base + "x@example.com");
    EXPECT_NE(status, 0) << output;
    EXPECT_TRUE(contains(output, "Relay access denied")) << output;
    const auto [ok_status, ok_output] = shell(base + "probe@example.org");
    EXPECT_EQ(ok_status, 0) << ok_output;
  }
}

TEST_F(MailEnvTest, PostconfWidensMynetworksAndBack) {
  const std::string valid = env()->value("VALID_IP");
  const std::string untrusted = env()->value("UNTRUSTED_SOURCE_IP");
  auto relay = [&] {
    auto c = smtpSession(valid, env()->smtpPort(), untrusted, false);
    return c ? rcptCode(*c, "x@example.com") : 0;
  };
  ASSERT_EQ(relay(), 554);
  ASSERT_TRUE(env()->postconf({"mynetworks = 127.0.0.0/8"})) << env()->lastError();
  EXPECT_EQ(relay(), 250);
  ASSERT_TRUE(env()->postconf({"mynetworks = " + env()->value("TRUSTED_SOURCE_IP") + "/32"}))
      << env()->lastError();
  EXPECT_EQ(relay(), 554);
}

TEST_F(MailEnvTest, DoveconfChangesWhatNewConnectionsSeeAndRejectsBadSettings) {
  auto capabilities = [&] {
    Client c;
    if (c.connect(env()->value("VALID_IP"), env()->imapStarttlsPort(),
                  env()->value("UNTRUSTED_SOURCE_IP")) != 0) {
      return std::string();
    }
    return c.readLine() + " ";
  };
  ASSERT_TRUE(contains(capabilities(), " AUTH=CRAM-MD5")) << capabilities();
  ASSERT_TRUE(env()->doveconf({"auth_mechanisms = plain login"})) << env()->lastError();
  EXPECT_FALSE(contains(capabilities(), " AUTH=CRAM-MD5")) << capabilities();
  ASSERT_TRUE(env()->doveconf({"auth_mechanisms = plain login cram-md5"})) << env()->lastError();
  EXPECT_TRUE(contains(capabilities(), " AUTH=CRAM-MD5")) << capabilities();

  EXPECT_FALSE(env()->doveconf({"no_such_setting = 1"}));
  EXPECT_TRUE(contains(env()->lastError(), "no_such_setting")) << env()->lastError();
  EXPECT_TRUE(contains(capabilities(), "* OK")) << "Dovecot still serves after a rejected setting";
}

TEST_F(MailEnvTest, LocalDomainIsDeliveredIntoTheImapMailbox) {
  auto c = smtpSession(env()->value("VALID_IP"), env()->smtpPort(),
                       env()->value("UNTRUSTED_SOURCE_IP"), false);
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(code(c->smtp("MAIL FROM:<probe@example.org>")), 250);
  ASSERT_EQ(code(c->smtp("RCPT TO:<probe@example.org>")), 250);
  ASSERT_EQ(code(c->smtp("DATA")), 354);
  c->send("Subject: mailenv delivery test\r\n\r\nhello");
  ASSERT_EQ(code(c->smtp(".")), 250);
  c->smtp("QUIT");

  const std::filesystem::path inbox =
      std::filesystem::path(env()->value("MAIL_DIR")) / "example.org/probe/Maildir/new";
  bool delivered = false;
  for (int i = 0; i < 100 && !delivered; ++i) {
    std::error_code ec;
    delivered = std::filesystem::exists(inbox, ec) && !std::filesystem::is_empty(inbox, ec);
    if (!delivered)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(delivered) << inbox;
  EXPECT_TRUE(contains(env()->queue(), "Mail queue is empty")) << env()->queue();
}

TEST_F(MailEnvTest, ServicesCanBeStoppedAndStartedAgain) {
  const std::string valid = env()->value("VALID_IP");
  // AUTH PLAIN on 465; 235, or 0 when smtpd closes the connection.
  auto submit = [&] {
    auto c = smtpSession(valid, env()->smtpsPort(), "", true);
    if (!c)
      return 0;
    const std::string plain = std::string(1, '\0') + env()->user() + '\0' + env()->password();
    std::string b64(4 * ((plain.size() + 2) / 3) + 1, '\0');
    b64.resize(EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()),
                               reinterpret_cast<const unsigned char*>(plain.data()),
                               static_cast<int>(plain.size())));
    return code(c->smtp("AUTH PLAIN " + b64));
  };
  ASSERT_EQ(submit(), 235);

  ASSERT_TRUE(env()->stopService("dovecot")) << env()->lastError();
  {
    Client c;
    EXPECT_EQ(c.connect(valid, env()->imapsPort()), ECONNREFUSED);
  }
  // An idle smtpd that started while Dovecot was up answers AUTH with 454 (temporary failure); a
  // new one cannot reach Dovecot's auth socket and exits: the connection closes after the TLS
  // handshake.
  const int during = submit();
  EXPECT_TRUE(during == 454 || during == 0) << during;
  ASSERT_TRUE(env()->startService("dovecot")) << env()->lastError();
  {
    Client c;
    ASSERT_EQ(c.connect(valid, env()->imapStarttlsPort()), 0);
    EXPECT_EQ(c.readLine().rfind("* OK", 0), 0u);
  }
  // Postfix throttles the failing service for service_throttle_time (2 s here, 60 s by default).
  int auth = 0;
  for (int i = 0; i < 50 && auth != 235; ++i) {
    auth = submit();
    if (auth != 235)
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(auth, 235);

  ASSERT_TRUE(env()->stopService("postfix")) << env()->lastError();
  {
    Client c;
    EXPECT_EQ(c.connect(valid, env()->smtpPort()), ECONNREFUSED);
  }
  ASSERT_TRUE(env()->startService("postfix")) << env()->lastError();
  EXPECT_NE(smtpSession(valid, env()->smtpPort(), "", false), nullptr);
  // Starting a running service changes nothing.
  EXPECT_TRUE(env()->startService("postfix")) << env()->lastError();
}

}  // namespace
}  // namespace mailprobe
