// The scheduler's cap with real EndpointProbes (scheduler_test.cpp uses fake ones): a tiny IMAP
// server on 127.0.0.1, on the same loop, counts the conversations it serves at once. Each probe
// (no TLS, no login) is one connection: greeting, CAPABILITY, LOGOUT. The server holds each
// greeting back a little, so that probes pile up and the cap is what stops them.

#include <gtest/gtest.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "daemon/scheduler.h"

namespace mailprobe {
namespace {

// One client of SlowImapServer. A conversation counts from accept to the reply to LOGOUT: the
// server has answered it before the probe can finish, so a probe started in a freed slot never
// overlaps the conversation it replaces.
struct ImapClient {
  uv_tcp_t tcp;
  uv_timer_t greeting;
  class SlowImapServer* server;
  std::string in;
  bool counted = false;
  int open_handles = 2;
};

class SlowImapServer {
 public:
  SlowImapServer(uv_loop_t* loop, uint64_t greeting_delay_ms)
      : loop_(loop), delay_ms_(greeting_delay_ms) {
    uv_tcp_init(loop_, &listener_);
    listener_.data = this;
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", 0, &addr);
    EXPECT_EQ(uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0), 0);
    EXPECT_EQ(uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 128,
                        [](uv_stream_t* s, int status) {
                          static_cast<SlowImapServer*>(s->data)->onConnection(status);
                        }),
              0);
    sockaddr_storage bound{};
    int len = sizeof bound;
    uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound), &len);
    port_ = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  }

  uint16_t port() const { return port_; }
  int maxConcurrent() const { return max_concurrent_; }
  int served() const { return served_; }
  void close() { uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr); }

 private:
  void onConnection(int status) {
    ASSERT_EQ(status, 0);
    auto* c = new ImapClient{};
    c->server = this;
    uv_tcp_init(loop_, &c->tcp);
    uv_timer_init(loop_, &c->greeting);
    c->tcp.data = c;
    c->greeting.data = c;
    if (uv_accept(reinterpret_cast<uv_stream_t*>(&listener_),
                  reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
      closeClient(c);
      return;
    }
    c->counted = true;
    max_concurrent_ = std::max(max_concurrent_, ++concurrent_);
    uv_timer_start(
        &c->greeting,
        [](uv_timer_t* t) {
          auto* client = static_cast<ImapClient*>(t->data);
          client->server->send(client, "* OK slow test server ready\r\n");
        },
        delay_ms_, 0);
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&c->tcp),
        [](uv_handle_t*, size_t suggested, uv_buf_t* buf) {
          buf->base = new char[suggested];
          buf->len = suggested;
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
          auto* client = static_cast<ImapClient*>(s->data);
          if (n > 0) {
            client->in.append(buf->base, static_cast<size_t>(n));
          }
          delete[] buf->base;
          if (n < 0) {
            client->server->closeClient(client);
            return;
          }
          client->server->onLines(client);
        });
  }

  void onLines(ImapClient* c) {
    size_t eol;
    while ((eol = c->in.find("\r\n")) != std::string::npos) {
      std::string line = c->in.substr(0, eol);
      c->in.erase(0, eol + 2);
      std::string tag = line.substr(0, line.find(' '));
      std::string command = line.substr(tag.size() + 1);
      if (command == "CAPABILITY") {
        send(c, "* CAPABILITY IMAP4rev1\r\n" + tag + " OK done\r\n");
      } else if (command == "LOGOUT") {
        send(c, "* BYE see you\r\n" + tag + " OK bye\r\n");
        endConversation(c);
      } else {
        send(c, tag + " BAD unexpected\r\n");
      }
    }
  }

  void endConversation(ImapClient* c) {
    if (c->counted) {
      c->counted = false;
      --concurrent_;
      ++served_;
    }
  }

  void send(ImapClient* c, const std::string& text) {
    auto* req = new uv_write_t;
    auto* copy = new std::string(text);
    req->data = copy;
    uv_buf_t buf = uv_buf_init(copy->data(), static_cast<unsigned>(copy->size()));
    if (uv_write(req, reinterpret_cast<uv_stream_t*>(&c->tcp), &buf, 1, [](uv_write_t* r, int) {
          delete static_cast<std::string*>(r->data);
          delete r;
        }) != 0) {
      delete copy;
      delete req;
    }
  }

  void closeClient(ImapClient* c) {
    endConversation(c);
    auto closed = [](uv_handle_t* h) {
      auto* client = static_cast<ImapClient*>(h->data);
      if (--client->open_handles == 0) {
        delete client;
      }
    };
    for (auto* h :
         {reinterpret_cast<uv_handle_t*>(&c->tcp), reinterpret_cast<uv_handle_t*>(&c->greeting)}) {
      if (!uv_is_closing(h)) {
        uv_close(h, closed);
      }
    }
  }

  uv_loop_t* loop_;
  uint64_t delay_ms_;
  uv_tcp_t listener_;
  uint16_t port_ = 0;
  int concurrent_ = 0;
  int max_concurrent_ = 0;
  int served_ = 0;
};

// A scheduler result in either shape (the endpoint results, or RunResults with relay cells).
[[maybe_unused]] const std::vector<ProbeResult>& endpointResults(
    const std::vector<ProbeResult>& r) {
  return r;
}
template <class Results>
auto endpointResults(const Results& r) -> decltype((r.endpoints)) {
  return r.endpoints;
}

TEST(SchedulerCap, RealProbesNeverExceedTheCapAtTheServer) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  // Every greeting waits 40 ms; 40 endpoints every 200 ms want ~200 probes/s, 4 slots give ~100.
  SlowImapServer server(&loop, 40);
  constexpr size_t kCap = 4;
  std::map<std::string, int> ok;
  int failed = 0;
  size_t most_seen_in_flight = 0;
  Scheduler::Options options;
  options.max_in_flight = kCap;
  options.jitter = 0.1;
  options.min_gap = std::chrono::milliseconds(20);
  options.seed = 7;
  Scheduler* scheduler_ptr = nullptr;
  Scheduler scheduler(
      &loop, options,
      [&](const std::string& key, auto results) {
        const auto& rs = endpointResults(results);
        bool good = !rs.empty() && std::all_of(rs.begin(), rs.end(),
                                               [](const ProbeResult& r) { return r.success; });
        good ? ++ok[key] : ++failed;
      },
      [&](const std::string&, double) {
        most_seen_in_flight = std::max(most_seen_in_flight, scheduler_ptr->inFlight());
      });
  scheduler_ptr = &scheduler;
  std::vector<ScheduledEndpoint> endpoints;
  for (int i = 0; i < 40; ++i) {
    ScheduledEndpoint e;
    e.key = "e" + std::to_string(i);
    e.spec.host = "127.0.0.1";
    e.spec.port = server.port();
    e.spec.service = Service::Imap;
    e.spec.security = Security::None;
    e.spec.auth = AuthPolicy::Skip;
    e.interval = std::chrono::milliseconds(200);
    endpoints.push_back(std::move(e));
  }
  scheduler.setEndpoints(std::move(endpoints));

  struct Stop {
    Scheduler* scheduler;
    SlowImapServer* server;
  } stop{&scheduler, &server};
  uv_timer_t stopper;
  uv_timer_init(&loop, &stopper);
  stopper.data = &stop;
  uv_timer_start(
      &stopper,
      [](uv_timer_t* t) {
        auto* s = static_cast<Stop*>(t->data);
        s->scheduler->stop(nullptr);
        s->server->close();
        uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
      },
      1500, 0);
  uv_run(&loop, UV_RUN_DEFAULT);

  EXPECT_LE(server.maxConcurrent(), static_cast<int>(kCap)) << "the server saw more at once";
  EXPECT_LE(scheduler.maxInFlightSeen(), kCap);
  EXPECT_LE(most_seen_in_flight, kCap);
  EXPECT_EQ(scheduler.maxInFlightSeen(), kCap) << "the cap was never reached: nothing tested";
  EXPECT_EQ(server.maxConcurrent(), static_cast<int>(kCap));
  EXPECT_EQ(failed, 0);
  EXPECT_GE(server.served(), 60) << "too few probes ran to fill the slots";
  EXPECT_EQ(ok.size(), 40u) << "an endpoint starved in the queue";
  EXPECT_EQ(uv_loop_close(&loop), 0) << "a handle was left open";
}

}  // namespace
}  // namespace mailprobe
