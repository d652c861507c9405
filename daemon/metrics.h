#pragma once
// Snapshot in, Prometheus families out (STYLE habit 10). Families are built fresh on every scrape
// from the immutable Snapshot, so an endpoint removed from the config disappears from the output
// and concurrent scrapes share nothing mutable. The reference table of every family is in
// README.md between <!-- metrics:begin --> and <!-- metrics:end -->; a test keeps the two equal.
//
// Label values come from the config (host, port, service, security) or from small fixed sets:
// family (none|ipv4|ipv6, of the probed address), phase and reason (types.h), mechanism
// (knownMechanisms()), stage (before_tls|after_tls), version and cipher (OpenSSL's names).
// Server replies, details, sentences, certificate subjects and addresses never become labels.

#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "daemon/snapshot.h"

namespace mailprobe {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Every mailprobe_* family for one snapshot. Pure: the same snapshot gives the same families.
// Families without any series (no TLS endpoint configured, ...) are left out.
std::vector<prometheus::MetricFamily> buildMetrics(const Snapshot& s);

// buildMetrics(*s) (nothing when s is null) plus the process_* families read from /proc now.
std::vector<prometheus::MetricFamily> scrapeMetrics(const Snapshot* s);

// The text exposition format (version 0.0.4) of `families`, byte for byte as prometheus-cpp's
// TextSerializer writes it, except that HELP text is escaped as the format says.
std::string serializeMetrics(const std::vector<prometheus::MetricFamily>& families);

// What /metrics serves: serializeMetrics(scrapeMetrics(s)), written straight from the snapshot
// without building families (at 1,000 endpoints, 65,000 series: a tenth of the time, and no
// heap of small strings left behind in the HTTP threads), handed to `write` piece by piece as
// it is rendered (pieces of up to ~64 KiB, and the buffered lines of an interleaved family):
// a scrape never holds the whole text (10 MB at 1,000 endpoints), only a few MiB.
void renderMetrics(const Snapshot* s, const std::function<void(std::string_view)>& write);
// The same text in one string.
std::string renderMetrics(const Snapshot* s);

// "counter", "gauge", "histogram", "summary" or "untyped", as in a # TYPE line.
std::string_view metricTypeName(prometheus::MetricType type);

// Holds the latest snapshot for readers on other threads: the loop publishes, scrapes copy the
// pointer under the lock and build from the copy without holding it.
class SnapshotCollectable : public prometheus::Collectable {
 public:
  void publish(SnapshotPtr s);
  SnapshotPtr current() const;
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  mutable std::mutex mu_;
  SnapshotPtr snapshot_;
};

// The bounded set of AUTH mechanism names that may become a `mechanism` label value: what the
// probe speaks (supportedMechanisms) plus the common SASL names of the IANA registry. Anything
// else a server advertises is shown on the status page and in JSON, never as a label.
const std::vector<std::string>& knownMechanisms();
// The canonical label value of `name` (case-insensitive), or "" when it is not in the set.
std::string_view mechanismLabel(std::string_view name);
// "ipv4", "ipv6", or "none" when no address was probed (resolution failed).
std::string_view addressFamily(std::string_view address);

}  // namespace mailprobe
