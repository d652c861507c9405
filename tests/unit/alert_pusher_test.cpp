// The push to Alertmanager on a real libuv loop, against a tiny HTTP listener on 127.0.0.1 run
// by the test itself (tests/fakes/http_listener.h: plain or TLS, answering, silent, or closing
// at once): the request's bytes,
// how each answer or failure is classified, the timeout bound, TLS verification before anything
// is sent, cancellation, and the pusher's schedule (a push per change, one request in flight per
// Alertmanager whatever happens meanwhile, nothing left on the loop once it is gone). The real
// Alertmanager is in tests/integration/alertmanager_test.cpp. Parsers first, sans-I/O.

#include "daemon/alert_pusher.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>
#include <thread>

#include "daemon/http_post.h"
#include "probes/tls_engine.h"
#include "tests/fakes/http_listener.h"
#include "tests/fakes/test_certs.h"
#include "tests/fakes/tls_server_engine.h"

namespace mailprobe {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using Listener = testing::HttpListener;

AlertmanagerUrl url(const std::string& text) {
  std::string error;
  auto u = parseAlertmanagerUrl(text, &error);
  EXPECT_TRUE(u) << error;
  return u.value_or(AlertmanagerUrl{});
}

// ---------------------------------------------------------------------------------------------
// Sans-I/O: the request and the answer.

TEST(HttpPostRequest, IsOneHttp11PostWithItsLengthAndBasicAuthWhenGiven) {
  EXPECT_EQ(httpPostRequest(url("http://127.0.0.1:9093/am/"), "[]"),
            "POST /am/api/v2/alerts HTTP/1.1\r\n"
            "Host: 127.0.0.1:9093\r\n"
            "User-Agent: mailprobed/" MAILPROBED_VERSION
            "\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: 2\r\n"
            "Connection: close\r\n"
            "\r\n"
            "[]");
  std::string with_auth = httpPostRequest(url("http://u:p@[::1]:9093"), "[{}]");
  EXPECT_NE(with_auth.find("Host: [::1]:9093\r\n"), std::string::npos);
  EXPECT_NE(with_auth.find("\r\nAuthorization: Basic dTpw\r\n"), std::string::npos);
  EXPECT_TRUE(with_auth.ends_with("\r\n\r\n[{}]"));
}

TEST(HttpResponseReader, ReadsTheStatusAndBodyHoweverTheBytesArrive) {
  using State = HttpResponseReader::State;
  struct Case {
    std::vector<std::string> chunks;
    bool close_after;  // the server closes after the chunks
    State state;
    int status;
    std::string body;  // or the error when Invalid
  };
  const std::string big(20000, 'x');
  const Case cases[] = {
      {{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}, false, State::Complete, 200, ""},
      {{"HTTP/1.1 201 Created\r\n\r\n"}, true, State::Complete, 201, ""},
      {{"HTTP/1.1 2", "00 OK\r\nContent-Le", "ngth: 5\r\n\r", "\nhel", "lo"},
       false,
       State::Complete,
       200,
       "hello"},
      {{"HTTP/1.0 400 Bad Request\nContent-Type: application/json\n\n{\"code\":400}"},
       true,
       State::Complete,
       400,
       "{\"code\":400}"},
      {{"HTTP/1.1 204 No Content\r\n\r\n"}, false, State::Complete, 204, ""},
      {{"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nerror\r\n"},
       false,
       State::NeedMore,
       500,
       ""},
      {{"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nerror\r\n0\r\n\r\n"},
       true,
       State::Complete,
       500,
       "5\r\nerror\r\n0\r\n\r\n"},
      {{"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n", big},
       false,
       State::Complete,
       200,
       big.substr(0, kMaxResponseBytes - 38)},
      {{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"}, true, State::Complete, 200, "short"},
      {{"SSH-2.0-OpenSSH_9.2\r\n\r\n"},
       false,
       State::Invalid,
       0,
       "not an HTTP/1.x answer: \"SSH-2.0-OpenSSH_9.2\""},
      {{"HTTP/1.1 2x0 OK\r\n\r\n"},
       false,
       State::Invalid,
       0,
       "not an HTTP/1.x answer: \"HTTP/1.1 2x0 OK\""},
      {{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"},
       false,
       State::Invalid,
       200,
       "a Content-Length that is not a number"},
      {{"HTTP/1.1 200 OK\r\nX: " + big},
       false,
       State::Invalid,
       0,
       "the answer's headers are longer than 16 KiB"},
      {{"HTTP/1.1 200 OK\r\n"},
       true,
       State::Invalid,
       0,
       "the connection closed in the middle of the answer's headers"},
      {{}, true, State::Invalid, 0, "the connection closed without an answer"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.chunks.empty() ? std::string("(nothing)") : c.chunks[0].substr(0, 40));
    HttpResponseReader r;
    for (const auto& chunk : c.chunks) {
      r.feed(chunk);
    }
    if (c.close_after) {
      r.finish();
    }
    EXPECT_EQ(r.state(), c.state);
    EXPECT_EQ(r.status(), c.status);
    if (c.state == State::Invalid) {
      EXPECT_EQ(r.error(), c.body);
    } else if (c.state == State::Complete) {
      EXPECT_EQ(r.body(), c.body);
    }
  }
}

const std::string kOk = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

// A loop for one test; at the end, every handle must be closed.
class LoopTest : public ::testing::Test {
 protected:
  void SetUp() override { uv_loop_init(&loop_); }
  void TearDown() override {
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }

  // Runs the loop until `pred` holds or `limit` passes; a 5 ms ticker keeps it from blocking on
  // a long timer.
  bool runUntil(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
    uv_timer_t ticker;
    uv_timer_init(&loop_, &ticker);
    uv_timer_start(
        &ticker, [](uv_timer_t*) {}, 5, 5);
    auto deadline = Clock::now() + limit;
    while (!pred() && Clock::now() < deadline) {
      uv_run(&loop_, UV_RUN_ONCE);
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&ticker), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
    return pred();
  }

  // One HttpPost to completion.
  HttpPostResult post(const AlertmanagerUrl& u, std::chrono::milliseconds timeout,
                      std::shared_ptr<TlsContext> tls = nullptr) {
    std::optional<HttpPostResult> got;
    HttpPost::start(&loop_, u, "[]", timeout, std::move(tls),
                    [&](HttpPostResult r) { got = std::move(r); });
    EXPECT_TRUE(runUntil([&] { return got.has_value(); }, timeout + 2s));
    return got.value_or(HttpPostResult{PushResult::ProtocolError, 0, "no result"});
  }

  uv_loop_t loop_;
};

using HttpPostTest = LoopTest;

TEST_F(HttpPostTest, A2xxAnswerIsOkAndTheServerGetsExactlyTheRequest) {
  Listener server(Listener::Mode::Answer, kOk);
  AlertmanagerUrl u = url("http://pusher:pw@127.0.0.1:" + std::to_string(server.port()));
  HttpPostResult r = post(u, 2s);
  EXPECT_EQ(r.result, PushResult::Ok) << r.detail;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.detail, "");
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_EQ(server.requests()[0], httpPostRequest(u, "[]"));
}

TEST_F(HttpPostTest, AnotherStatusIsAnHttpErrorWithTheServersWords) {
  Listener server(Listener::Mode::Answer,
                  "HTTP/1.1 400 Bad Request\r\nContent-Length: 45\r\n\r\n"
                  "{\"code\":400,\"message\":\"start time is zero\"}\n\n");
  HttpPostResult r = post(url(server.base()), 2s);
  EXPECT_EQ(r.result, PushResult::HttpError);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.detail, "HTTP 400: {\"code\":400,\"message\":\"start time is zero\"}");
}

TEST_F(HttpPostTest, NothingListeningIsConnectFailed) {
  uint16_t port;
  {
    Listener gone(Listener::Mode::CloseAtOnce, "");
    port = gone.port();
  }
  HttpPostResult r = post(url("http://127.0.0.1:" + std::to_string(port)), 2s);
  EXPECT_EQ(r.result, PushResult::ConnectFailed);
  EXPECT_EQ(r.detail,
            "cannot connect to 127.0.0.1:" + std::to_string(port) + ": connection refused");
}

TEST_F(HttpPostTest, AServerThatClosesWithoutAnAnswerIsAProtocolError) {
  Listener server(Listener::Mode::CloseAtOnce, "");
  HttpPostResult r = post(url(server.base()), 2s);
  // Closed before the request was read: the kernel resets the connection.
  EXPECT_EQ(r.result, PushResult::ProtocolError);
  EXPECT_TRUE(r.detail.find("closed") != std::string::npos ||
              r.detail == "connection lost: connection reset by peer")
      << r.detail;
}

TEST_F(HttpPostTest, ASilentServerIsATimeoutWithinTheBound) {
  Listener server(Listener::Mode::Silent, "");
  auto started = Clock::now();
  HttpPostResult r = post(url(server.base()), 300ms);
  auto took = Clock::now() - started;
  EXPECT_EQ(r.result, PushResult::Timeout);
  EXPECT_EQ(r.detail, "no complete answer in time (waiting for the answer)");
  EXPECT_GE(took, 290ms);  // libuv's cached loop time may make it look a few ms early
  EXPECT_LT(took, 800ms);
  // Our end is closed: the server sees the connection go.
  auto deadline = Clock::now() + 2s;
  while (server.openConnections() > 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(server.openConnections(), 0);
}

TEST_F(HttpPostTest, CancelClosesAtOnceAndNeverReports) {
  Listener server(Listener::Mode::Silent, "");
  bool reported = false;
  HttpPost* p = HttpPost::start(&loop_, url(server.base()), "[]", 10s, nullptr,
                                [&](HttpPostResult) { reported = true; });
  ASSERT_TRUE(runUntil([&] { return server.connections() > 0; }, 2s));
  p->cancel();
  auto started = Clock::now();
  uv_run(&loop_, UV_RUN_DEFAULT);         // returns once the close callbacks ran: nothing waits
  EXPECT_LT(Clock::now() - started, 1s);  // against the request's 10 s
  EXPECT_FALSE(reported);
}

// https: the test CA, a certificate for 127.0.0.1; TLS versions as OpenSSL likes them.
struct TestPki {
  testing::TempDir dir;
  testing::KeyCert ca = testing::makeSelfSigned({.is_ca = true, .common_name = "alert test CA"});
  std::string ca_file = dir.write("ca.pem", ca.cert_pem);

  testing::TlsServerOptions server(int64_t not_after_offset = 30 * 86400) const {
    testing::KeyCert leaf = testing::makeSigned(
        {.ip_addresses = {"127.0.0.1"}, .not_after_offset = not_after_offset}, ca);
    return {.key_pem = leaf.key_pem, .cert_pem = leaf.cert_pem};
  }
  std::shared_ptr<TlsContext> context() const {
    std::string error;
    auto ctx = TlsContext::create(TlsOptions{.ca_file = ca_file}, &error);
    EXPECT_TRUE(ctx) << error;
    return ctx;
  }
};

TEST_F(HttpPostTest, HttpsSendsOnlyToACertificateThatVerifies) {
  TestPki pki;
  Listener good(Listener::Mode::Answer, kOk, pki.server());
  AlertmanagerUrl u = url("https://127.0.0.1:" + std::to_string(good.port()));
  HttpPostResult r = post(u, 3s, pki.context());
  EXPECT_EQ(r.result, PushResult::Ok) << r.detail;
  ASSERT_EQ(good.requests().size(), 1u);
  EXPECT_EQ(good.requests()[0], httpPostRequest(u, "[]"));

  // Expired: the handshake completes, but nothing is sent.
  Listener expired(Listener::Mode::Answer, kOk, pki.server(-60));
  r = post(url("https://pusher:pw@127.0.0.1:" + std::to_string(expired.port())), 3s, pki.context());
  EXPECT_EQ(r.result, PushResult::TlsFailed);
  EXPECT_NE(r.detail.find("does not verify (cert_expired"), std::string::npos) << r.detail;
  EXPECT_TRUE(expired.requests().empty());
  auto deadline = Clock::now() + 2s;
  while (expired.openConnections() > 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(expired.strayBytes(), 0u);

  // A plain HTTP server behind an https URL: the handshake fails.
  Listener plain(Listener::Mode::Answer, kOk);
  r = post(url("https://127.0.0.1:" + std::to_string(plain.port())), 500ms, pki.context());
  EXPECT_TRUE(r.result == PushResult::TlsFailed || r.result == PushResult::Timeout)
      << toString(r.result) << ": " << r.detail;
  EXPECT_TRUE(plain.requests().empty());
}

// ---------------------------------------------------------------------------------------------
// The pusher.

Verdict verdict(const std::string& profile, bool ok, int64_t now) {
  Verdict v;
  v.profile = profile;
  v.direction = Direction::Outgoing;
  v.known = true;
  v.ok = ok;
  v.reason = ok ? FailureReason::None : FailureReason::AuthFailed;
  v.phase = Phase::Auth;
  v.explanation = ok ? "smtp 465 (tls) works" : "smtp 465 (tls) refuses the login";
  v.judged_at = now;
  v.since = now;
  v.sentence = sentenceFor(v, now);
  return v;
}

AlertmanagerConfig configFor(const std::vector<std::string>& urls,
                             std::chrono::milliseconds timeout = 2s) {
  AlertmanagerConfig c;
  for (const auto& u : urls) {
    c.urls.push_back(url(u));
  }
  c.timeout = timeout;
  c.alerts.labels = {{"instance", "test"}, {"job", "mailprobed"}, {"severity", "critical"}};
  c.alerts.resend_interval = 60s;
  return c;
}

using AlertPusherTest = LoopTest;

TEST_F(AlertPusherTest, PushesOnChangeOnlyAndSendsTheRecoveryAsResolved) {
  Listener server(Listener::Mode::Answer, kOk);
  int64_t now = 1772331240;
  {
    AlertPusher pusher(&loop_, configFor({server.base()}), [&] { return now; });
    pusher.update({verdict("android-guide", true, now)});
    runUntil([] { return false; }, 50ms);
    EXPECT_TRUE(server.requests().empty());  // nothing fires: nothing sent

    now += 60;
    pusher.update({verdict("android-guide", false, now)});
    ASSERT_TRUE(
        runUntil([&] { return server.requests().size() == 1 && pusher.inFlight() == 0; }, 2s));
    json alerts = json::parse(server.bodies()[0]);
    ASSERT_EQ(alerts.size(), 1u);
    EXPECT_EQ(alerts[0]["labels"]["profile"], "android-guide");
    EXPECT_EQ(alerts[0]["startsAt"], rfc3339(now));
    EXPECT_EQ(alerts[0]["endsAt"], rfc3339(now + 240));

    // Judged again (every publish), unchanged: no push.
    for (int i = 0; i < 5; ++i) {
      pusher.update({verdict("android-guide", false, now)});
    }
    runUntil([] { return false; }, 50ms);
    EXPECT_EQ(server.requests().size(), 1u);

    now += 30;
    pusher.update({verdict("android-guide", true, now)});
    ASSERT_TRUE(
        runUntil([&] { return server.requests().size() == 2 && pusher.inFlight() == 0; }, 2s));
    alerts = json::parse(server.bodies()[1]);
    ASSERT_EQ(alerts.size(), 1u);
    EXPECT_EQ(alerts[0]["endsAt"], rfc3339(now));  // resolved

    std::vector<AlertmanagerStats> stats = pusher.stats();
    ASSERT_EQ(stats.size(), 1u);
    EXPECT_EQ(stats[0].url, server.base());
    EXPECT_EQ(stats[0].pushes.at(PushResult::Ok), 2u);
    EXPECT_EQ(stats[0].pushes.size(), std::size(kPushResults));
  }
}

TEST_F(AlertPusherTest, ASlowAlertmanagerHoldsOneRequestAndDelaysNothing) {
  Listener slow(Listener::Mode::Silent, "");
  Listener fast(Listener::Mode::Answer, kOk);
  int64_t now = 1772331240;
  AlertPusher pusher(&loop_, configFor({slow.base(), fast.base()}, 400ms), [&] { return now; });
  // Flapping verdicts: a push is due at every change.
  auto started = Clock::now();
  for (int i = 0; i < 200; ++i) {
    ++now;
    pusher.update({verdict("thunderbird", i % 2 == 1, now)});
  }
  EXPECT_LT(Clock::now() - started, 300ms) << "update() waited on the network";
  EXPECT_LE(pusher.inFlight(), 2u);
  EXPECT_LE(slow.connections(), 1);
  // The fast one answers; the slow one times out once; the pending flag makes one more push to
  // each, not one per change.
  ASSERT_TRUE(runUntil(
      [&] {
        auto s = pusher.stats();
        return s[0].pushes.at(PushResult::Timeout) >= 2 && pusher.inFlight() == 0;
      },
      3s));
  std::vector<AlertmanagerStats> stats = pusher.stats();
  EXPECT_EQ(stats[0].pushes.at(PushResult::Timeout), 2u);
  EXPECT_EQ(stats[1].pushes.at(PushResult::Ok), 2u);
  EXPECT_EQ(fast.requests().size(), 2u);
  EXPECT_EQ(slow.connections(), 2);
}

TEST_F(AlertPusherTest, GoingAwayOrLosingAUrlCancelsItsRequestAtOnce) {
  Listener slow(Listener::Mode::Silent, "");
  Listener other(Listener::Mode::Silent, "");
  int64_t now = 1772331240;
  auto pusher = std::make_unique<AlertPusher>(&loop_, configFor({slow.base(), other.base()}, 30s),
                                              [&] { return now; });
  pusher->update({verdict("ios-mail", false, now)});
  ASSERT_TRUE(runUntil([&] { return slow.connections() == 1 && other.connections() == 1; }, 2s));
  EXPECT_EQ(pusher->inFlight(), 2u);

  // A reload drops one URL: its request goes, the other stays.
  pusher->configure(configFor({other.base()}, 30s));
  EXPECT_EQ(pusher->inFlight(), 1u);
  ASSERT_EQ(pusher->stats().size(), 1u);
  EXPECT_EQ(pusher->stats()[0].url, other.base());

  // Gone (a reload without [alertmanager], or a stop): the loop has nothing left to wait for.
  pusher.reset();
  auto started = Clock::now();
  uv_run(&loop_, UV_RUN_DEFAULT);
  EXPECT_LT(Clock::now() - started, 1s);  // against the requests' 30 s
  auto deadline = Clock::now() + 2s;
  while ((slow.openConnections() > 0 || other.openConnections() > 0) && Clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(slow.openConnections() + other.openConnections(), 0);
}

TEST_F(AlertPusherTest, NewCredentialsKeepTheCountersAndCancelTheRequestMadeWithTheOldOnes) {
  Listener server(Listener::Mode::Answer, kOk);
  const std::string where = "127.0.0.1:" + std::to_string(server.port());
  int64_t now = 1772331240;
  AlertPusher pusher(&loop_, configFor({"http://pusher:old@" + where}), [&] { return now; });
  pusher.update({verdict("outlook", false, now)});
  ASSERT_TRUE(
      runUntil([&] { return server.requests().size() == 1 && pusher.inFlight() == 0; }, 2s));
  EXPECT_NE(server.requests()[0].find("Authorization: " +
                                      url("http://pusher:old@" + where).authorization()),
            std::string::npos);

  ++now;
  pusher.update({verdict("outlook", true, now)});  // a push starts...
  EXPECT_EQ(pusher.inFlight(), 1u);
  pusher.configure(configFor({"http://pusher:new@" + where}));  // ... and is cancelled
  EXPECT_EQ(pusher.inFlight(), 0u);
  ASSERT_EQ(pusher.stats().size(), 1u);
  EXPECT_EQ(pusher.stats()[0].url, "http://***@" + where);
  EXPECT_EQ(pusher.stats()[0].pushes.at(PushResult::Ok), 1u);

  ++now;
  pusher.update({verdict("outlook", false, now)});
  ASSERT_TRUE(
      runUntil([&] { return server.requests().size() == 2 && pusher.inFlight() == 0; }, 2s));
  EXPECT_NE(server.requests()[1].find("Authorization: " +
                                      url("http://pusher:new@" + where).authorization()),
            std::string::npos)
      << server.requests()[1];
  EXPECT_EQ(pusher.stats()[0].pushes.at(PushResult::Ok), 2u);
}

}  // namespace
}  // namespace mailprobe
