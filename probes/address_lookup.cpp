#include "probes/address_lookup.h"

#include <netdb.h>

#include <algorithm>
#include <cstring>
#include <optional>

namespace mailprobe {
namespace {

std::optional<sockaddr_storage> parseAddress(const std::string& text, uint16_t port) {
  sockaddr_storage a{};
  if (uv_ip4_addr(text.c_str(), port, reinterpret_cast<sockaddr_in*>(&a)) == 0 ||
      uv_ip6_addr(text.c_str(), port, reinterpret_cast<sockaddr_in6*>(&a)) == 0) {
    return a;
  }
  return std::nullopt;
}

}  // namespace

std::string addressText(const sockaddr_storage& a) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (a.ss_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(&a), buf, sizeof buf);
  } else {
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&a), buf, sizeof buf);
  }
  return buf;
}

struct AddressLookup::Request {
  uv_getaddrinfo_t req;
  AddressLookup* owner;
  std::string host;
};

AddressLookup* AddressLookup::start(uv_loop_t* loop, const EndpointSpec& spec, Done done) {
  auto* l = new AddressLookup(loop, std::move(done));
  l->begin(spec);
  return l;
}

AddressLookup::AddressLookup(uv_loop_t* loop, Done done) : loop_(loop), done_(std::move(done)) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  started_ns_ = uv_hrtime();
}

void AddressLookup::begin(const EndpointSpec& spec) {
  Result static_result;
  if (!spec.addresses.empty()) {
    for (const auto& text : spec.addresses) {
      if (auto a = parseAddress(text, spec.port)) {
        static_result.addresses.push_back(*a);
      }
    }
    if (static_result.addresses.empty()) {
      static_result.reason = FailureReason::ResolveFailed;
      static_result.detail = "no usable address";
    }
    finish(std::move(static_result));
    return;
  }
  if (auto literal = parseAddress(spec.host, spec.port)) {
    static_result.addresses.push_back(*literal);
    finish(std::move(static_result));
    return;
  }
  resolving_ = true;
  auto* r = new Request{{}, this, spec.host};
  r->req.data = r;
  request_ = r;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = spec.family == AddressFamily::V4   ? AF_INET
                    : spec.family == AddressFamily::V6 ? AF_INET6
                                                       : AF_UNSPEC;
  std::string port = std::to_string(spec.port);
  int rc = uv_getaddrinfo(
      loop_, &r->req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        auto* rr = static_cast<Request*>(req->data);
        AddressLookup* owner = rr->owner;
        std::string host = std::move(rr->host);
        delete rr;
        if (owner != nullptr) {  // null: cancelled or timed out, nobody waits for this answer
          owner->request_ = nullptr;
          owner->onResolved(status, res, host);
        }
        uv_freeaddrinfo(res);
      },
      spec.host.c_str(), port.c_str(), &hints);
  if (rc != 0) {
    delete r;
    request_ = nullptr;
    finish({{}, FailureReason::ResolveFailed, uv_strerror(rc), 0});
    return;
  }
  uv_timer_start(
      &timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<AddressLookup*>(t->data);
        if (self->request_ != nullptr) {
          // The lookup thread may be stuck: detach from it; its callback frees the request.
          self->request_->owner = nullptr;
          uv_cancel(reinterpret_cast<uv_req_t*>(&self->request_->req));
          self->request_ = nullptr;
          self->finish({{}, FailureReason::Timeout, "name resolution took too long", 0});
        }
      },
      static_cast<uint64_t>(std::max<int64_t>(1, spec.timeouts.resolve.count())), 0);
}

void AddressLookup::onResolved(int status, addrinfo* res, const std::string& host) {
  Result r;
  if (status != 0) {
    finish({{},
            FailureReason::ResolveFailed,
            "cannot resolve " + host + ": " + uv_strerror(status),
            0});
    return;
  }
  std::vector<std::string> seen;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) {
      continue;
    }
    sockaddr_storage a{};
    std::memcpy(&a, ai->ai_addr, ai->ai_addrlen);
    std::string text = addressText(a);
    if (std::find(seen.begin(), seen.end(), text) == seen.end()) {
      seen.push_back(text);
      r.addresses.push_back(a);
    }
  }
  if (r.addresses.empty()) {
    r.reason = FailureReason::ResolveFailed;
    r.detail = host + " has no address";
  }
  finish(std::move(r));
}

void AddressLookup::finish(Result result) {
  if (finishing_) {
    return;
  }
  finishing_ = true;
  result_ = std::move(result);
  result_.seconds = resolving_ ? static_cast<double>(uv_hrtime() - started_ns_) / 1e9 : 0;
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* h) {
    auto* self = static_cast<AddressLookup*>(h->data);
    Done done = std::move(self->done_);
    Result result = std::move(self->result_);
    delete self;
    if (done) {
      done(std::move(result));
    }
  });
}

void AddressLookup::cancel() {
  if (request_ != nullptr) {
    request_->owner = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&request_->req));
    request_ = nullptr;
  }
  done_ = nullptr;
  finish({});
}

}  // namespace mailprobe
