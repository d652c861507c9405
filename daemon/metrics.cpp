#include "daemon/metrics.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "daemon/process_stats.h"
#include "probes/probe_spec.h"

namespace mailprobe {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// The labels of one series, as views into the snapshot, static tables or the caller's locals,
// valid for one call to the sink. A fixed array: building a series allocates nothing.
class Labels {
 public:
  using Pair = std::pair<std::string_view, std::string_view>;
  Labels() = default;
  Labels(std::initializer_list<Pair> pairs) { add(pairs); }
  // A copy with `more` appended.
  Labels plus(std::initializer_list<Pair> more) const {
    Labels out = *this;
    out.add(more);
    return out;
  }
  const Pair* begin() const { return items_.data(); }
  const Pair* end() const { return items_.data() + size_; }
  bool empty() const { return size_ == 0; }

  // The same labels, the text of all of them so far given as `text` (name="escaped value",...
  // as TextWriter writes it), so that the lines sharing them copy it instead of writing it
  // again: an endpoint's host, port, service and security start 60 lines.
  Labels rendered(std::string_view text) const {
    Labels out = *this;
    out.rendered_ = text;
    out.rendered_size_ = size_;
    return out;
  }
  std::string_view renderedText() const { return rendered_; }
  const Pair* unrendered() const { return begin() + rendered_size_; }

 private:
  void add(std::initializer_list<Pair> pairs) {
    for (const Pair& p : pairs) {
      assert(size_ < items_.size() && "more labels than any family has");
      items_[size_++] = p;
    }
  }
  std::array<Pair, 12> items_{};
  size_t size_ = 0;
  std::string_view rendered_;  // the text of the first rendered_size_ pairs
  size_t rendered_size_ = 0;
};

// Where the series go. Families are declared first, in output order, then series are added
// to any of them; a family left without series is not written.
class Sink {
 public:
  using Family = size_t;
  virtual ~Sink() = default;
  virtual Family add(std::string_view name, std::string_view help, MetricType type) = 0;
  // A gauge's or a counter's value, as the family's type says.
  virtual void sample(Family f, const Labels& labels, double value) = 0;
  virtual void histogram(Family f, const Labels& labels, const ClientMetric::Histogram& h) = 0;
  // No more series will come for `f` nor for any family declared before it: a sink that
  // streams may write them out now.
  virtual void done(Family /*f*/) {}
};

// prometheus-cpp families (buildMetrics): what the tests look into.
class FamilySink final : public Sink {
 public:
  Family add(std::string_view name, std::string_view help, MetricType type) override {
    families_.push_back(MetricFamily{std::string(name), std::string(help), type, {}});
    return families_.size() - 1;
  }
  void sample(Family f, const Labels& labels, double value) override {
    ClientMetric& m = push(f, labels);
    if (families_[f].type == MetricType::Counter) {
      m.counter.value = value;
    } else {
      m.gauge.value = value;
    }
  }
  void histogram(Family f, const Labels& labels, const ClientMetric::Histogram& h) override {
    push(f, labels).histogram = h;
  }
  std::vector<MetricFamily> take() {
    std::vector<MetricFamily> out;
    for (auto& f : families_) {
      if (!f.metric.empty()) {
        out.push_back(std::move(f));
      }
    }
    return out;
  }

 private:
  ClientMetric& push(Family f, const Labels& labels) {
    ClientMetric& m = families_[f].metric.emplace_back();
    for (const auto& [name, value] : labels) {
      m.label.push_back({std::string(name), std::string(value)});
    }
    return m;
  }
  std::deque<MetricFamily> families_;
};

// The text exposition format 0.0.4, written as prometheus-cpp's TextSerializer writes it
// (a unit test holds the two equal; HELP is escaped, as the format says and 1.0.1 does not),
// without building families first. A line is written into room made at the end of the string
// in one step: at 65,000 lines, appending piece by piece was most of the cost.
class TextWriter {
 public:
  explicit TextWriter(std::string& out) : out_(out) {}

  // The text of `labels` between the braces (Labels::rendered).
  static std::string labelText(const Labels& labels) {
    std::string text;
    for (const auto& [label, value] : labels) {
      const size_t at = text.size();
      text.resize(at + label.size() + 2 * value.size() + 4);
      char* p = text.data() + at;
      if (at != 0) {
        *p++ = ',';
      }
      p = pair(p, label, value);
      text.resize(static_cast<size_t>(p - text.data()));
    }
    return text;
  }

  void header(std::string_view name, std::string_view help, MetricType type) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    for (char c : help) {
      if (c == '\\') {
        out_ += "\\\\";
      } else if (c == '\n') {
        out_ += "\\n";
      } else {
        out_ += c;
      }
    }
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += metricTypeName(type);
    out_ += '\n';
  }

  // name{labels[,le="bound"]} value
  void line(std::string_view name, std::string_view suffix, const Labels& labels, double value,
            std::string_view le = {}) {
    char* p = head(name, suffix, labels, le);
    p = number(p, value);
    finish(p);
  }
  void line(std::string_view name, std::string_view suffix, const Labels& labels, uint64_t value,
            std::string_view le = {}) {
    char* p = head(name, suffix, labels, le);
    p = std::to_chars(p, p + kNumberRoom, value).ptr;
    finish(p);
  }

  void histogram(std::string_view name, const Labels& labels, const ClientMetric::Histogram& h) {
    line(name, "_count", labels, h.sample_count);
    line(name, "_sum", labels, h.sample_sum);
    double last = -std::numeric_limits<double>::infinity();
    for (const auto& b : h.bucket) {
      std::array<char, kNumberRoom> bound;
      char* end = number(bound.data(), b.upper_bound);
      line(name, "_bucket", labels, b.cumulative_count,
           std::string_view(bound.data(), static_cast<size_t>(end - bound.data())));
      last = b.upper_bound;
    }
    if (last != std::numeric_limits<double>::infinity()) {
      line(name, "_bucket", labels, h.sample_count, "+Inf");
    }
  }

 private:
  static constexpr size_t kNumberRoom = 32;  // %.16g, an integer or "+Inf"

  static char* copy(char* p, std::string_view s) {
    std::memcpy(p, s.data(), s.size());
    return p + s.size();
  }

  // Escapes \, " and newline in a label value.
  static char* escaped(char* p, std::string_view value) {
    for (char c : value) {
      if (c == '\\' || c == '"') {
        *p++ = '\\';
        *p++ = c;
      } else if (c == '\n') {
        *p++ = '\\';
        *p++ = 'n';
      } else {
        *p++ = c;
      }
    }
    return p;
  }

  // Makes room for the whole line at the end of out_ and writes up to the value.
  char* head(std::string_view name, std::string_view suffix, const Labels& labels,
             std::string_view le) {
    const std::string_view rendered = labels.renderedText();
    size_t room = name.size() + suffix.size() + le.size() + rendered.size() + kNumberRoom + 16;
    for (const Labels::Pair* l = labels.unrendered(); l != labels.end(); ++l) {
      room += l->first.size() + 2 * l->second.size() + 4;
    }
    start_ = out_.size();
    out_.resize(start_ + room);
    char* p = out_.data() + start_;
    p = copy(p, name);
    p = copy(p, suffix);
    if (!labels.empty() || !le.empty()) {
      char sep = '{';
      if (!rendered.empty()) {
        *p++ = sep;
        p = copy(p, rendered);
        sep = ',';
      }
      for (const Labels::Pair* l = labels.unrendered(); l != labels.end(); ++l) {
        *p++ = sep;
        p = pair(p, l->first, l->second);
        sep = ',';
      }
      if (!le.empty()) {
        *p++ = sep;
        p = copy(p, "le=\"");
        p = copy(p, le);
        *p++ = '"';
      }
      *p++ = '}';
    }
    *p++ = ' ';
    return p;
  }

  void finish(char* p) {
    *p++ = '\n';
    out_.resize(static_cast<size_t>(p - out_.data()));
  }

  // label="escaped value"
  static char* pair(char* p, std::string_view label, std::string_view value) {
    p = copy(p, label);
    *p++ = '=';
    *p++ = '"';
    p = escaped(p, value);
    *p++ = '"';
    return p;
  }

  // As TextSerializer: NaN and infinities by name, else %.16g.
  static char* number(char* p, double v) {
    if (std::isnan(v)) {
      return copy(p, "Nan");
    }
    if (std::isinf(v)) {
      return copy(p, v < 0 ? "-Inf" : "+Inf");
    }
    // Most values are whole (counts, timestamps, 0/1): %.16g prints them as integers.
    if (v == std::trunc(v) && std::fabs(v) < 1e15 && !(v == 0 && std::signbit(v))) {
      return std::to_chars(p, p + kNumberRoom, static_cast<int64_t>(v)).ptr;
    }
    return std::to_chars(p, p + kNumberRoom, v, std::chars_format::general, 16).ptr;
  }

  std::string& out_;
  size_t start_ = 0;
};

// The text straight away (renderMetrics, what /metrics serves), streamed: the lines of the
// family being written go straight to the output, in chunks of kChunk bytes; lines of a later
// family (emitAll writes some families interleaved, endpoint by endpoint) wait in that family's
// own buffer until every family before it is done. At 1,000 endpoints the largest families
// stream, so a scrape holds a few MiB instead of the whole 10 MB text twice over.
class TextSink final : public Sink {
 public:
  using Write = std::function<void(std::string_view)>;
  static constexpr size_t kChunk = 64 * 1024;

  explicit TextSink(const Write& write) : write_(write) { chunk_.reserve(kChunk + 4096); }

  Family add(std::string_view name, std::string_view help, MetricType type) override {
    families_.push_back({name, help, type, {}, false});
    return families_.size() - 1;
  }
  void sample(Family f, const Labels& labels, double value) override {
    TextWriter(target(f)).line(families_[f].name, "", labels, value);
    flushIfFull();
  }
  void histogram(Family f, const Labels& labels, const ClientMetric::Histogram& h) override {
    TextWriter(target(f)).histogram(families_[f].name, labels, h);
    flushIfFull();
  }
  void done(Family f) override {
    for (; next_ <= f && next_ < families_.size(); ++next_) {
      TextFamily& t = families_[next_];
      if (t.started || !t.body.empty()) {  // a family without series is not written
        start(t);
      }
    }
  }
  // Writes whatever is left; the sink is spent.
  void finish() {
    if (!families_.empty()) {
      done(families_.size() - 1);
    }
    flush();
  }

 private:
  struct TextFamily {
    std::string_view name, help;  // string literals
    MetricType type;
    std::string body;      // lines waiting for the families before this one
    bool started = false;  // its HELP and TYPE lines are out
  };

  // Where a line of family `f` goes: straight out when `f` is the family being written.
  std::string& target(Family f) {
    assert(f >= next_ && "a series for a family already written out");
    if (f != next_) {
      return families_[f].body;
    }
    start(families_[f]);
    return chunk_;
  }

  // The HELP and TYPE lines (once), then the lines the family buffered, in order.
  void start(TextFamily& t) {
    if (!t.started) {
      TextWriter(chunk_).header(t.name, t.help, t.type);
      t.started = true;
    }
    if (!t.body.empty()) {
      flush();
      write_(t.body);
      std::string().swap(t.body);
    }
  }

  void flushIfFull() {
    if (chunk_.size() >= kChunk) {
      flush();
    }
  }
  void flush() {
    if (!chunk_.empty()) {
      write_(chunk_);
      chunk_.clear();
    }
  }

  const Write& write_;
  std::deque<TextFamily> families_;
  Family next_ = 0;
  std::string chunk_;
};

// One series per failure reason, every reason from the start (0 until it happens).
void reasonCounters(Sink& out, Sink::Family f, const Labels& base,
                    const std::map<FailureReason, uint64_t>& counts) {
  for (FailureReason reason : allFailureReasons()) {
    if (reason == FailureReason::None) {
      continue;
    }
    auto it = counts.find(reason);
    out.sample(f, base.plus({{"reason", toString(reason)}}),
               it == counts.end() ? 0 : static_cast<double>(it->second));
  }
}

// OpenSSL's protocol and cipher names are short identifiers; anything else (a future engine
// returning free text) must not reach a label.
std::string_view tlsName(std::string_view s) {
  if (s.empty()) {
    return "unknown";
  }
  if (s.size() > 64) {
    return "other";
  }
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return "other";
    }
  }
  return s;
}

// What the last run showed for one address family of one endpoint. With several addresses in a
// family the family is only as good as its worst address: up only if all succeeded, the earliest
// expiry, verified only if every certificate verified.
struct FamilyView {
  std::string_view family;
  std::vector<const ProbeResult*> results;

  bool up() const {
    return std::all_of(results.begin(), results.end(), [](auto* r) { return r->success; });
  }
  const ProbeResult* firstFailure() const {
    for (auto* r : results) {
      if (!r->success) {
        return r;
      }
    }
    return nullptr;
  }
};

std::vector<FamilyView> byFamily(const EndpointState& e) {
  std::vector<FamilyView> out;
  for (std::string_view fam : {"none", "ipv4", "ipv6"}) {
    FamilyView v{fam, {}};
    for (const auto& r : e.last) {
      if (addressFamily(r.address) == fam) {
        v.results.push_back(&r);
      }
    }
    if (!v.results.empty()) {
      out.push_back(std::move(v));
    }
  }
  return out;
}

// The facts of one FamilyView that its series show, worked out once per scrape so that every
// family can then be written in a pass of its own (and stream out). Views into the snapshot.
struct FamilyFacts {
  size_t endpoint = 0;  // index in Snapshot::endpoints
  std::string_view family;
  bool up = false;
  const ProbeResult* failure = nullptr;  // the first failing address
  std::map<Phase, double> phases;        // the slowest address per phase
  // TLS: from every address whose handshake completed, whatever the verification said.
  bool any_tls = false;
  std::set<std::pair<std::string_view, std::string_view>> negotiated;  // version, cipher
  int64_t leaf = 0;                                                    // earliest leaf not-after
  int64_t chain = 0;                                                   // earliest chain not-after
  bool verified = true;
  FailureReason verify_reason = FailureReason::None;  // of the first address not verified
  bool accept_all_ok = true;
  // AUTH: advertised names come from the server, so only the bounded set becomes a label.
  std::set<std::pair<std::string_view, std::string_view>> offered;  // mechanism, stage
  std::map<std::string_view, bool> logged_in;                       // mechanism, every success
  std::optional<bool> refused;                                      // plaintext login
};

FamilyFacts familyFacts(size_t endpoint, const FamilyView& v) {
  FamilyFacts f;
  f.endpoint = endpoint;
  f.family = v.family;
  f.up = v.up();
  f.failure = v.firstFailure();
  for (const ProbeResult* r : v.results) {
    for (const PhaseTiming& t : r->timings) {
      f.phases[t.phase] = std::max(f.phases[t.phase], t.seconds);
    }
    if (r->tls) {
      const TlsFacts& t = *r->tls;
      f.any_tls = true;
      f.negotiated.insert({tlsName(t.version), tlsName(t.cipher)});
      if (t.leaf_not_after != 0) {
        f.leaf = f.leaf == 0 ? t.leaf_not_after : std::min(f.leaf, t.leaf_not_after);
      }
      if (t.chain_not_after != 0) {
        f.chain = f.chain == 0 ? t.chain_not_after : std::min(f.chain, t.chain_not_after);
      }
      if (t.verify != FailureReason::None) {
        if (f.verified) {
          f.verify_reason = t.verify;
        }
        f.verified = false;
      }
      f.accept_all_ok = f.accept_all_ok && t.accept_all_ok;
    }
    for (const auto& m : r->auth_before_tls) {
      if (auto label = mechanismLabel(m); !label.empty()) {
        f.offered.insert({label, "before_tls"});
      }
    }
    for (const auto& m : r->auth_after_tls) {
      if (auto label = mechanismLabel(m); !label.empty()) {
        f.offered.insert({label, "after_tls"});
      }
    }
    for (const AuthAttempt& a : r->auth) {
      auto label = mechanismLabel(a.mechanism);
      if (label.empty()) {
        continue;
      }
      auto [it, fresh] = f.logged_in.emplace(label, a.success);
      if (!fresh) {
        it->second = it->second && a.success;
      }
    }
    if (r->plaintext_login_refused) {
      f.refused = f.refused.value_or(true) && *r->plaintext_login_refused;
    }
  }
  return f;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

// The cells of one relay check that share a vantage, auth state and recipient: one per address
// probed. Like an address family, the group is only as good as its worst cell.
struct CellGroup {
  const RelayCell* shown = nullptr;  // the first failing cell, else the first
  bool ok = true;
  bool open = false;
};

std::string_view trustedLabel(bool trusted) {
  return trusted ? "true" : "false";
}

// One series per profile and direction whose verdict is known: the answer to "can users set up
// like this read and send mail now?". Profile ids come from the config (bounded).
void profileMetrics(Sink& out, const Snapshot& s) {
  const auto G = MetricType::Gauge;
  auto ok = out.add("mailprobe_client_config_ok",
                    "1 if a client set up like this profile could read (incoming) or send "
                    "(outgoing) mail according to the latest results, 0 if it fails; absent "
                    "while the results cannot tell.",
                    G);
  auto failure = out.add("mailprobe_client_config_failure_info",
                         "Why and at which step a client profile fails; always 1, present only "
                         "while failing.",
                         G);
  auto since = out.add("mailprobe_client_config_since_timestamp_seconds",
                       "Unix time since which the profile's verdict has been what it is.", G);
  for (const auto& v : s.verdicts) {
    if (!v.known) {
      continue;
    }
    const Labels base{{"profile", v.profile}, {"direction", toString(v.direction)}};
    out.sample(ok, base, v.ok ? 1 : 0);
    if (v.since != 0) {
      out.sample(since, base, static_cast<double>(v.since));
    }
    if (!v.ok) {
      out.sample(failure, base.plus({{"reason", toString(v.reason)}, {"phase", toString(v.phase)}}),
                 1);
    }
  }
}

void relayMetrics(Sink& out, const Snapshot& s) {
  const auto G = MetricType::Gauge;
  auto interval = out.add("mailprobe_relay_interval_seconds",
                          "Configured time between two runs of the relay check.", G);
  auto runs = out.add("mailprobe_relay_runs_total", "Completed runs of the relay check.",
                      MetricType::Counter);
  auto failures = out.add("mailprobe_relay_failures_total",
                          "Completed relay check runs in which at least one cell had this "
                          "reason (each reason counted once per run). Every reason exists from "
                          "the start at 0.",
                          MetricType::Counter);
  auto last_run = out.add("mailprobe_relay_last_run_timestamp_seconds",
                          "Unix time at which the last run of the relay check ended; 0 before "
                          "the first run.",
                          G);
  auto open = out.add("mailprobe_relay_open",
                      "1 if the most recent relay check found an open relay from this vantage "
                      "(an outside recipient accepted where refusal was expected), else 0.",
                      G);
  auto cell_ok = out.add("mailprobe_relay_cell_ok",
                         "1 if the server answered this relay cell as the policy expects in "
                         "the most recent run (every address probed), else 0.",
                         G);
  auto cell_info = out.add("mailprobe_relay_cell_info",
                           "What the policy expects of a relay cell, what the server answered "
                           "(accept, refuse, or none when it was not asked) and the reason; "
                           "always 1.",
                           G);
  auto reply_code = out.add("mailprobe_relay_reply_code",
                            "The SMTP reply code the relay cell got at RCPT TO (or MAIL FROM); "
                            "0 when it was not asked. 4xx is temporary, 5xx permanent.",
                            G);

  for (const RelayState& r : s.relay) {
    const std::string port = std::to_string(r.port);
    const Labels base{{"host", r.host}, {"port", port}};
    out.sample(interval, base, r.interval_seconds);
    out.sample(runs, base, static_cast<double>(r.runs_total));
    reasonCounters(out, failures, base, r.failures_total);
    out.sample(last_run, base, static_cast<double>(r.last_run_timestamp));
    if (r.last.empty()) {
      continue;
    }
    // Vantage by vantage in config order, then auth state and recipient.
    for (const RelayVantage& v : r.vantages) {
      bool vantage_open = false;
      std::map<std::pair<RelayAuth, RelayRecipient>, CellGroup> groups;
      for (const RelayCell& c : r.last) {
        if (c.vantage != v.name) {
          continue;
        }
        CellGroup& g = groups[{c.auth, c.recipient}];
        if (g.shown == nullptr || (g.ok && !c.ok())) {
          g.shown = &c;
        }
        g.ok = g.ok && c.ok();
        g.open = g.open || c.reason == FailureReason::OpenRelay;
        vantage_open = vantage_open || g.open;
      }
      out.sample(open, base.plus({{"vantage", v.name}}), vantage_open ? 1 : 0);
      for (const auto& [key, g] : groups) {
        const RelayCell& c = *g.shown;
        const Labels cell = base.plus({{"vantage", v.name},
                                       {"auth", toString(key.first)},
                                       {"recipient", toString(key.second)}});
        out.sample(cell_ok, cell, g.ok ? 1 : 0);
        out.sample(cell_info,
                   cell.plus({{"trusted", trustedLabel(v.trusted)},
                              {"expected", toString(c.expected)},
                              {"observed", c.observed ? toString(*c.observed) : "none"},
                              {"reason", toString(c.reason)}}),
                   1);
        out.sample(reply_code, cell, c.code);
      }
    }
  }
}

}  // namespace

std::string_view metricTypeName(MetricType type) {
  switch (type) {
    case MetricType::Counter:
      return "counter";
    case MetricType::Gauge:
      return "gauge";
    case MetricType::Histogram:
      return "histogram";
    case MetricType::Summary:
      return "summary";
    default:
      return "untyped";
  }
}

const std::vector<std::string>& knownMechanisms() {
  static const std::vector<std::string> known = [] {
    std::vector<std::string> v;
    auto add = [&v](const std::string& m) {
      if (std::find(v.begin(), v.end(), m) == v.end()) {
        v.push_back(m);
      }
    };
    for (const auto& m : supportedMechanisms(Service::Imap)) {
      add(m);
    }
    for (const auto& m : supportedMechanisms(Service::Smtp)) {
      add(m);
    }
    for (const char* m :
         {"DIGEST-MD5", "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS",
          "XOAUTH2", "OAUTHBEARER", "GSSAPI", "NTLM", "EXTERNAL", "ANONYMOUS"}) {
      add(m);
    }
    return v;
  }();
  return known;
}

std::string_view mechanismLabel(std::string_view name) {
  const std::string u = upper(name);
  for (const auto& m : knownMechanisms()) {
    if (m == u) {
      return m;
    }
  }
  return "";
}

std::string_view addressFamily(std::string_view address) {
  if (address.empty()) {
    return "none";
  }
  return address.find(':') != std::string_view::npos ? "ipv6" : "ipv4";
}

namespace {

// host, port, service and security: the labels every series of an endpoint starts with, and
// their text, worked out once per scrape for the 60-odd lines that share them.
class EndpointLabels {
 public:
  explicit EndpointLabels(const EndpointState& e)
      : port_(std::to_string(e.port)), text_(TextWriter::labelText(pairs(e))) {}
  // Views into `e` (the endpoint this was made from) and into this object.
  Labels labels(const EndpointState& e) const { return pairs(e).rendered(text_); }

 private:
  Labels pairs(const EndpointState& e) const {
    return {{"host", e.host},
            {"port", port_},
            {"service", toString(e.service)},
            {"security", toString(e.security)}};
  }
  std::string port_;
  std::string text_;
};

// A histogram from the snapshot's cumulative counts per bound. They are kept monotonic and
// within the count, so that the exposition stays a valid histogram even if a writer slips.
template <size_t N>
void cumulativeHistogram(const std::array<double, N>& bounds, const std::array<uint64_t, N>& counts,
                         uint64_t count, double sum, ClientMetric::Histogram& h) {
  h.sample_count = count;
  h.sample_sum = sum;
  h.bucket.clear();
  uint64_t running = 0;
  for (size_t i = 0; i < N; ++i) {
    running = std::min<uint64_t>(std::max(running, counts[i]), count);
    h.bucket.push_back({running, bounds[i]});
  }
  h.bucket.push_back({count, std::numeric_limits<double>::infinity()});
}

// Every mailprobe_* series of one snapshot, in output order.
void emitAll(Sink& out, const Snapshot& s) {
  const auto G = MetricType::Gauge;
  const auto C = MetricType::Counter;

  // The daemon.
  auto build_info = out.add("mailprobe_build_info", "The mailprobed version; always 1.", G);
  auto start_time =
      out.add("mailprobe_start_time_seconds", "Unix time at which the daemon started.", G);
  auto reload_ok = out.add("mailprobe_config_last_reload_successful",
                           "1 if the last configuration load or reload succeeded; 0 if it was "
                           "refused and the previous configuration is still in use.",
                           G);
  auto reload_ts = out.add("mailprobe_config_last_reload_success_timestamp_seconds",
                           "Unix time of the last successful configuration load or reload.", G);
  auto reloads = out.add("mailprobe_config_reloads_total",
                         "Configuration reloads attempted (SIGHUP), successful or not.", C);
  auto reload_failures = out.add("mailprobe_config_reload_failures_total",
                                 "Configuration reloads refused because the new configuration "
                                 "was invalid.",
                                 C);
  auto in_flight = out.add("mailprobe_probes_in_flight", "Endpoint probes running now.", G);
  auto in_flight_max =
      out.add("mailprobe_probes_in_flight_max", "The limit on endpoint probes running at once.", G);
  auto loop_lag = out.add("mailprobe_event_loop_lag_seconds",
                          "Last measured delay of the event loop behind its timers.", G);
  auto pushes = out.add("mailprobe_alertmanager_push_total",
                        "Pushes of the client alerts to each configured Alertmanager, by how "
                        "they ended: ok, resolve_failed, connect_failed, timeout, tls_failed, "
                        "http_error, protocol_error.",
                        C);
  auto schedule_delay =
      out.add("mailprobe_schedule_delay_seconds",
              "How late each scheduled run started: actual minus planned start, for endpoint "
              "probes, relay checks and TLS scans (the event loop's lag, and the wait for a "
              "free slot when the most probes are in flight).",
              MetricType::Histogram);

  const DaemonStats& d = s.daemon;
  out.sample(build_info,
             {{"version", d.version.empty() ? std::string_view(MAILPROBED_VERSION) : d.version}},
             1);
  out.sample(start_time, {}, static_cast<double>(d.start_timestamp));
  out.sample(reload_ok, {}, d.config_last_reload_successful ? 1 : 0);
  out.sample(reload_ts, {}, static_cast<double>(d.config_last_reload_success_timestamp));
  out.sample(reloads, {}, static_cast<double>(d.config_reloads_total));
  out.sample(reload_failures, {}, static_cast<double>(d.config_reload_failures_total));
  out.sample(in_flight, {}, d.probes_in_flight);
  out.sample(in_flight_max, {}, d.max_probes_in_flight);
  out.sample(loop_lag, {}, d.loop_lag_seconds);
  for (const AlertmanagerStats& am : d.alertmanagers) {
    for (const auto& [result, count] : am.pushes) {
      out.sample(pushes, {{"alertmanager", am.url}, {"result", toString(result)}},
                 static_cast<double>(count));
    }
  }
  out.done(pushes);
  ClientMetric::Histogram h;  // reused: its buckets are allocated once
  cumulativeHistogram(kScheduleDelayBuckets, d.schedule_delay_buckets, d.schedule_delay_count,
                      d.schedule_delay_sum, h);
  out.histogram(schedule_delay, {}, h);
  out.done(schedule_delay);

  // Every configured endpoint, from the first scrape on.
  auto interval = out.add("mailprobe_endpoint_interval_seconds",
                          "Configured time between two scheduled runs of the endpoint probe.", G);
  auto runs = out.add("mailprobe_endpoint_runs_total",
                      "Completed runs of the endpoint probe (every address of the endpoint).", C);
  auto failures = out.add("mailprobe_endpoint_failures_total",
                          "Completed runs in which at least one address failed, by the reason "
                          "of the first failure. Every reason exists from the start at 0.",
                          C);
  auto duration =
      out.add("mailprobe_endpoint_probe_duration_seconds",
              "Duration of whole endpoint probe runs, successful or not.", MetricType::Histogram);
  auto last_run = out.add("mailprobe_endpoint_last_run_timestamp_seconds",
                          "Unix time at which the last run of the endpoint probe ended; 0 before "
                          "the first run.",
                          G);
  auto last_success = out.add("mailprobe_endpoint_last_success_timestamp_seconds",
                              "Unix time at which the last run where every address succeeded "
                              "ended; 0 if none has yet.",
                              G);

  // From the results of the most recent run, per address family of the probed addresses.
  auto up = out.add("mailprobe_endpoint_up",
                    "1 if every address of this family succeeded in the most recent scheduled "
                    "run, else 0. Absent before the first run.",
                    G);
  auto failure_info = out.add("mailprobe_endpoint_failure_info",
                              "Why the most recent run failed: the reason and phase of the first "
                              "failing address; always 1, present only while failing.",
                              G);
  auto phase_duration = out.add("mailprobe_endpoint_phase_duration_seconds",
                                "Time spent in each phase reached in the most recent run "
                                "(the slowest address of the family).",
                                G);
  auto tls_info = out.add("mailprobe_tls_info",
                          "TLS version and cipher negotiated in the most recent run; always 1.", G);
  auto cert_not_after = out.add("mailprobe_tls_cert_not_after_timestamp_seconds",
                                "Unix time at which the leaf certificate expires; present "
                                "whenever a handshake completed, even if verification failed.",
                                G);
  auto chain_not_after = out.add("mailprobe_tls_chain_not_after_timestamp_seconds",
                                 "Unix time at which the first certificate of the presented "
                                 "chain expires.",
                                 G);
  auto verify_ok = out.add("mailprobe_tls_cert_verify_ok",
                           "1 if the certificate chain and host name verified, else 0.", G);
  auto verify_info = out.add("mailprobe_tls_cert_verify_info",
                             "Outcome of certificate verification as a reason (none when it "
                             "verified); always 1.",
                             G);
  auto accept_all = out.add("mailprobe_tls_accept_all_ok",
                            "1 if a client that accepts all certificates would have completed "
                            "the handshake, else 0.",
                            G);
  auto advertised = out.add("mailprobe_auth_mechanism_advertised",
                            "AUTH mechanisms the server advertised in the most recent run, "
                            "before and after TLS; always 1.",
                            G);
  auto auth_success = out.add("mailprobe_auth_mechanism_success",
                              "1 if the probe account logged in with this mechanism in the most "
                              "recent run, else 0.",
                              G);
  auto plaintext_refused = out.add("mailprobe_plaintext_login_refused",
                                   "1 if login before TLS was refused or not offered, 0 if it "
                                   "was accepted; present where the probe could tell.",
                                   G);
  auto backoff = out.add("mailprobe_auth_backoff_seconds",
                         "Seconds until the probe account may log in again with this mechanism "
                         "on this endpoint, after refused logins (0: it may now); present for "
                         "every endpoint that logs in.",
                         G);

  // The families of whole runs, one after the other over every endpoint: the largest (every
  // reason, every bucket) stream out without being held (Sink::done).
  std::vector<EndpointLabels> endpoint_labels;
  endpoint_labels.reserve(s.endpoints.size());
  for (const EndpointState& e : s.endpoints) {
    endpoint_labels.emplace_back(e);
  }
  auto each = [&](Sink::Family f, const auto& write) {
    for (size_t i = 0; i < s.endpoints.size(); ++i) {
      const EndpointState& e = s.endpoints[i];
      write(e, endpoint_labels[i].labels(e));
    }
    out.done(f);
  };
  each(interval, [&](const EndpointState& e, const Labels& base) {
    out.sample(interval, base, e.interval_seconds);
  });
  each(runs, [&](const EndpointState& e, const Labels& base) {
    out.sample(runs, base, static_cast<double>(e.runs_total));
  });
  each(failures, [&](const EndpointState& e, const Labels& base) {
    reasonCounters(out, failures, base, e.failures_total);
  });
  each(duration, [&](const EndpointState& e, const Labels& base) {
    cumulativeHistogram(kDurationBuckets, e.duration_buckets, e.runs_total, e.duration_sum, h);
    out.histogram(duration, base, h);
  });
  each(last_run, [&](const EndpointState& e, const Labels& base) {
    out.sample(last_run, base, static_cast<double>(e.last_run_timestamp));
  });
  each(last_success, [&](const EndpointState& e, const Labels& base) {
    out.sample(last_success, base, static_cast<double>(e.last_success_timestamp));
  });

  // The families of the most recent run, per address family: worked out once, then written
  // family by family like the ones above.
  std::vector<FamilyFacts> facts;
  for (size_t i = 0; i < s.endpoints.size(); ++i) {
    for (const FamilyView& v : byFamily(s.endpoints[i])) {
      facts.push_back(familyFacts(i, v));
    }
  }
  auto each_family = [&](Sink::Family f, const auto& write) {
    for (const FamilyFacts& v : facts) {
      const EndpointState& e = s.endpoints[v.endpoint];
      write(v, endpoint_labels[v.endpoint].labels(e).plus({{"family", v.family}}));
    }
    out.done(f);
  };
  each_family(up,
              [&](const FamilyFacts& v, const Labels& fam) { out.sample(up, fam, v.up ? 1 : 0); });
  each_family(failure_info, [&](const FamilyFacts& v, const Labels& fam) {
    if (const ProbeResult* bad = v.failure) {
      out.sample(failure_info,
                 fam.plus({{"reason", toString(bad->reason)}, {"phase", toString(bad->phase)}}), 1);
    }
  });
  each_family(phase_duration, [&](const FamilyFacts& v, const Labels& fam) {
    for (const auto& [phase, seconds] : v.phases) {
      out.sample(phase_duration, fam.plus({{"phase", toString(phase)}}), seconds);
    }
  });
  // TLS: from every address whose handshake completed, whatever the verification said.
  each_family(tls_info, [&](const FamilyFacts& v, const Labels& fam) {
    for (const auto& [version, cipher] : v.negotiated) {
      out.sample(tls_info, fam.plus({{"version", version}, {"cipher", cipher}}), 1);
    }
  });
  each_family(cert_not_after, [&](const FamilyFacts& v, const Labels& fam) {
    if (v.any_tls && v.leaf != 0) {
      out.sample(cert_not_after, fam, static_cast<double>(v.leaf));
    }
  });
  each_family(chain_not_after, [&](const FamilyFacts& v, const Labels& fam) {
    if (v.any_tls && v.chain != 0) {
      out.sample(chain_not_after, fam, static_cast<double>(v.chain));
    }
  });
  each_family(verify_ok, [&](const FamilyFacts& v, const Labels& fam) {
    if (v.any_tls) {
      out.sample(verify_ok, fam, v.verified ? 1 : 0);
    }
  });
  each_family(verify_info, [&](const FamilyFacts& v, const Labels& fam) {
    if (v.any_tls) {
      out.sample(verify_info, fam.plus({{"reason", toString(v.verify_reason)}}), 1);
    }
  });
  each_family(accept_all, [&](const FamilyFacts& v, const Labels& fam) {
    if (v.any_tls) {
      out.sample(accept_all, fam, v.accept_all_ok ? 1 : 0);
    }
  });
  each_family(advertised, [&](const FamilyFacts& v, const Labels& fam) {
    for (const auto& [mechanism, stage] : v.offered) {
      out.sample(advertised, fam.plus({{"mechanism", mechanism}, {"stage", stage}}), 1);
    }
  });
  each_family(auth_success, [&](const FamilyFacts& v, const Labels& fam) {
    for (const auto& [mechanism, ok] : v.logged_in) {
      out.sample(auth_success, fam.plus({{"mechanism", mechanism}}), ok ? 1 : 0);
    }
  });
  each_family(plaintext_refused, [&](const FamilyFacts& v, const Labels& fam) {
    if (v.refused) {
      out.sample(plaintext_refused, fam, *v.refused ? 1 : 0);
    }
  });
  // What the login gate says now, per endpoint and mechanism (not from the last run).
  each(backoff, [&](const EndpointState& e, const Labels& base) {
    for (const AuthBackoffState& b : e.auth_backoff) {
      // Mechanisms come from the config or the probe's own list: bounded, but checked.
      if (auto label = mechanismLabel(b.mechanism); !label.empty()) {
        out.sample(backoff, base.plus({{"mechanism", label}}), b.seconds_left);
      }
    }
  });
  relayMetrics(out, s);
  profileMetrics(out, s);
}

}  // namespace

std::vector<MetricFamily> buildMetrics(const Snapshot& s) {
  FamilySink out;
  emitAll(out, s);
  return out.take();
}

std::vector<MetricFamily> scrapeMetrics(const Snapshot* s) {
  std::vector<MetricFamily> out;
  if (s != nullptr) {
    out = buildMetrics(*s);
  }
  if (auto p = readProcessStats()) {
    for (auto& f : buildProcessMetrics(*p)) {
      out.push_back(std::move(f));
    }
  }
  return out;
}

std::string serializeMetrics(const std::vector<MetricFamily>& families) {
  std::string out;
  TextWriter w(out);
  for (const MetricFamily& f : families) {
    w.header(f.name, f.help, f.type);
    for (const ClientMetric& m : f.metric) {
      // Views into `m`, which outlives the line.
      Labels labels;
      for (const auto& l : m.label) {
        labels = labels.plus({{l.name, l.value}});
      }
      switch (f.type) {
        case MetricType::Counter:
          w.line(f.name, "", labels, m.counter.value);
          break;
        case MetricType::Histogram:
          w.histogram(f.name, labels, m.histogram);
          break;
        case MetricType::Untyped:
          w.line(f.name, "", labels, m.untyped.value);
          break;
        default:
          w.line(f.name, "", labels, m.gauge.value);
          break;
      }
    }
  }
  return out;
}

void renderMetrics(const Snapshot* s, const std::function<void(std::string_view)>& write) {
  if (s != nullptr) {
    TextSink sink(write);
    emitAll(sink, *s);
    sink.finish();
  }
  if (auto p = readProcessStats()) {
    write(serializeMetrics(buildProcessMetrics(*p)));
  }
}

std::string renderMetrics(const Snapshot* s) {
  std::string out;
  renderMetrics(s, [&out](std::string_view piece) { out += piece; });
  return out;
}

void SnapshotCollectable::publish(SnapshotPtr s) {
  std::lock_guard<std::mutex> lock(mu_);
  snapshot_ = std::move(s);
}

SnapshotPtr SnapshotCollectable::current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_;
}

std::vector<MetricFamily> SnapshotCollectable::Collect() const {
  // Build from a private copy of the pointer: the loop may publish again meanwhile.
  SnapshotPtr s = current();
  return scrapeMetrics(s.get());
}

}  // namespace mailprobe
