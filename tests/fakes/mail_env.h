#pragma once
// MailEnv: a real Dovecot (IMAP) and a real Postfix (SMTP) on loopback for integration tests,
// started by tests/integration/mailenv.sh in a fresh temporary directory. See the header of that
// script for the ports, the certificate variant behind each local address (127.0.0.1 valid,
// .4 expired, .5 wrong host, .6 self-signed, .7 missing intermediate, .8 not yet valid), the
// trusted (127.0.0.2) and untrusted (127.0.0.3) client source addresses, the source address
// exempt from Dovecot's auth penalty (127.0.0.9) and the users.
//
// Start it once per test suite (start-up takes a few seconds): derive the fixture from
// MailEnvSuite below, or call MailEnv::start in SetUpTestSuite.

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mailprobe::testing {

class MailEnv {
 public:
  // Runs `mailenv.sh start` in a fresh temporary directory; on failure returns null and *error
  // says why (with the tail of the logs).
  static std::unique_ptr<MailEnv> start(std::string* error);
  // Runs `mailenv.sh stop` and removes the directory, even if a test failed. With
  // MAILPROBE_KEEP_MAILENV set in the environment the directory is kept (and named on stderr).
  ~MailEnv();
  MailEnv(const MailEnv&) = delete;
  MailEnv& operator=(const MailEnv&) = delete;

  uint16_t imapStarttlsPort() const { return imap_starttls_port_; }
  uint16_t imapsPort() const { return imaps_port_; }
  uint16_t smtpPort() const { return smtp_port_; }
  uint16_t smtpsPort() const { return smtps_port_; }
  uint16_t submissionPort() const { return submission_port_; }

  const std::string& user() const { return user_; }
  std::string password() const;  // read from DIR/password, not kept in memory
  const std::string& caFile() const { return ca_file_; }
  const std::string& dir() const { return dir_; }

  // Any KEY of DIR/env ("EXPIRED_IP", "TRUSTED_SOURCE_IP", "OTHER_USER", "MAILLOG", ...); empty if
  // absent. An empty IPV6_IP means ::1 is not configured on this machine.
  std::string value(const std::string& key) const;

  // `mailenv.sh postconf DIR setting...`: edits the private main.cf ("key = value") and reloads
  // Postfix; returns once the new settings are in force.
  bool postconf(const std::vector<std::string>& settings);
  // `mailenv.sh postconf-master DIR service/type/parameter=value...`: a master.cf service's -o
  // parameter (postconf -P), e.g. "127.0.0.1:<submission port>/inet/smtpd_relay_restrictions=
  // permit_mynetworks,reject", then a reload; returns once the new settings are in force.
  bool postconfMaster(const std::vector<std::string>& settings);
  // `mailenv.sh doveconf DIR setting...`: top-level Dovecot settings ("auth_mechanisms = plain",
  // "ssl_min_protocol = TLSv1.3", "auth_failure_delay = 0"), then a reload; returns once new
  // connections get them. A setting Dovecot rejects changes nothing and returns false.
  bool doveconf(const std::vector<std::string>& settings);
  // `mailenv.sh queue DIR`: the private Postfix queue as postqueue -p prints it.
  std::string queue() const;
  // `mailenv.sh stop-service|start-service DIR dovecot|postfix`, for outages.
  bool stopService(const std::string& name);
  bool startService(const std::string& name);
  // Tails of the Dovecot and Postfix logs, for failure messages.
  std::string logs(int lines = 40) const;
  // Logins the servers refused for a wrong password so far, IMAP and SMTP alike: the "Password
  // mismatch" lines of Dovecot's auth (auth_verbose), which also checks Postfix's SASL logins.
  size_t refusedLogins() const;
  // Output of the last mailenv.sh run that failed (empty if none did).
  const std::string& lastError() const { return last_error_; }

  // MAILPROBE_SOURCE_DIR "/tests/integration/mailenv.sh".
  static std::string scriptPath();
  // Dovecot and Postfix are installed and we can start them (root); otherwise false and *why.
  static bool available(std::string* why);

 private:
  explicit MailEnv(std::string dir) : dir_(std::move(dir)) {}
  bool loadEnv(std::string* error);
  bool run(const std::vector<std::string>& args, std::string* output) const;
  // `mailenv.sh COMMAND DIR setting...`
  bool runSettings(const std::string& command, const std::vector<std::string>& settings);

  std::string dir_;
  std::map<std::string, std::string> env_;
  uint16_t imap_starttls_port_ = 0;
  uint16_t imaps_port_ = 0;
  uint16_t smtp_port_ = 0;
  uint16_t smtps_port_ = 0;
  uint16_t submission_port_ = 0;
  std::string user_;
  std::string password_file_;
  std::string ca_file_;
  bool started_ = false;
  mutable std::string last_error_;
};

// Undoes a change to the mail servers (a Postfix or Dovecot setting, a stopped service) when it
// goes out of scope, even after a failed assertion; undo() does it earlier, once. A failed undo
// is a test failure.
class MailEnvChange {
 public:
  MailEnvChange(MailEnv* env, std::function<bool(MailEnv*)> undo)
      : env_(env), undo_(std::move(undo)) {}
  ~MailEnvChange() { undo(); }
  MailEnvChange(const MailEnvChange&) = delete;
  MailEnvChange& operator=(const MailEnvChange&) = delete;

  bool undo() {
    if (!undo_) {
      return true;
    }
    std::function<bool(MailEnv*)> f = std::move(undo_);
    undo_ = nullptr;
    bool ok = f(env_);
    EXPECT_TRUE(ok) << env_->lastError();
    return ok;
  }

 private:
  MailEnv* env_;
  std::function<bool(MailEnv*)> undo_;
};

// A GoogleTest fixture with one MailEnv per test suite: `class FooTest : public MailEnvSuite`, then
// env() in the tests. Every test is skipped when Dovecot or Postfix is not installed (or we are not
// root), and fails when the servers did not start. A fixture that overrides SetUp() calls
// MailEnvSuite::SetUp() first and returns if IsSkipped() || HasFatalFailure().
class MailEnvSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;
  void TearDown() override;  // after a failure, prints the tails of the server logs

  static MailEnv* env() { return env_; }

 private:
  static MailEnv* env_;
  static std::string skip_reason_;
  static std::string start_error_;
  static double start_seconds_;
};

}  // namespace mailprobe::testing
