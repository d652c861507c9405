// The Grafana dashboard (etc/grafana) only queries metrics the daemon exports, through the
// datasource variable, with PromQL that Prometheus's own promtool accepts.

#include <gtest/gtest.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

namespace mailprobe {
namespace {

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::json dashboard() {
  return nlohmann::json::parse(
      readFile(std::string(MAILPROBE_SOURCE_DIR) + "/etc/grafana/mailprobed-dashboard.json"));
}

std::vector<std::string> expressions(const nlohmann::json& d) {
  std::vector<std::string> out;
  for (const auto& p : d["panels"]) {
    for (const auto& t : p["targets"]) {
      out.push_back(t["expr"].get<std::string>());
    }
  }
  return out;
}

// Metric names documented in the README's metric table: `| `name` | type | ...`.
std::set<std::string> documentedMetrics() {
  std::set<std::string> names;
  std::regex row(R"(^\| `([a-z_:][a-z0-9_:]*)` \|)");
  std::istringstream in(readFile(std::string(MAILPROBE_SOURCE_DIR) + "/README.md"));
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_search(line, m, row)) {
      names.insert(m[1]);
    }
  }
  return names;
}

TEST(Dashboard, HasAStableUidAndEveryQueryGoesThroughTheDatasourceVariable) {
  nlohmann::json d = dashboard();
  EXPECT_EQ(d["uid"], "mailprobed-overview");
  bool has_variable = false;
  for (const auto& v : d["templating"]["list"]) {
    has_variable |= v["name"] == "datasource" && v["type"] == "datasource";
  }
  EXPECT_TRUE(has_variable);
  ASSERT_GE(d["panels"].size(), 8u);
  std::set<int> ids;
  for (const auto& p : d["panels"]) {
    EXPECT_TRUE(ids.insert(p["id"].get<int>()).second) << "duplicate panel id";
    EXPECT_EQ(p["datasource"]["uid"], "${datasource}") << p["title"];
    for (const auto& t : p["targets"]) {
      EXPECT_EQ(t["datasource"]["uid"], "${datasource}") << p["title"];
    }
  }
}

TEST(Dashboard, EveryMetricItQueriesIsExportedAndDocumented) {
  std::set<std::string> documented = documentedMetrics();
  ASSERT_GT(documented.size(), 20u) << "README metric table not found";
  std::regex metric(R"(\b((?:mailprobe|process)_[a-z0-9_]+))");
  size_t seen = 0;
  for (const auto& expr : expressions(dashboard())) {
    for (std::sregex_iterator it(expr.begin(), expr.end(), metric), end; it != end; ++it) {
      std::string name = (*it)[1];
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        std::string s(suffix);
        if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0 &&
            !documented.count(name)) {
          name.erase(name.size() - s.size());
        }
      }
      ++seen;
      EXPECT_TRUE(documented.count(name)) << name << " (in " << expr << ") is not exported";
    }
  }
  EXPECT_GE(seen, 10u);
}

TEST(AlertRules, OnlyUseMetricsTheDaemonExports) {
  std::set<std::string> documented = documentedMetrics();
  std::string rules =
      readFile(std::string(MAILPROBE_SOURCE_DIR) + "/etc/prometheus/mailprobed.rules.yml");
  std::regex metric(R"(\b(mailprobe_[a-z0-9_]+))");
  size_t seen = 0;
  for (std::sregex_iterator it(rules.begin(), rules.end(), metric), end; it != end; ++it) {
    ++seen;
    EXPECT_TRUE(documented.count((*it)[1])) << (*it)[1] << " is not exported";
  }
  EXPECT_GE(seen, 10u);
}

TEST(Dashboard, EveryQueryIsValidPromQL) {
  if (::access("/usr/bin/promtool", X_OK) != 0) {
    GTEST_SKIP() << "promtool not installed (apt-get install prometheus)";
  }
  // promtool checks PromQL inside rule files: one recording rule per panel query.
  char dir[] = "/tmp/mailprobe-dashboard-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/rules.yml";
  std::ofstream out(path);
  out << "groups:\n  - name: dashboard\n    rules:\n";
  int n = 0;
  for (std::string expr : expressions(dashboard())) {
    expr = std::regex_replace(expr, std::regex(R"(\$__rate_interval)"), "5m");
    expr = std::regex_replace(expr, std::regex(R"(\$(job|host))"), ".*");
    nlohmann::json quoted = expr;
    out << "      - record: dashboard:query" << ++n << "\n        expr: " << quoted.dump() << "\n";
  }
  out.close();
  std::string cmd = "/usr/bin/promtool check rules " + path + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string output;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) {
    output += buf;
  }
  int status = ::pclose(p);
  std::remove(path.c_str());
  ::rmdir(dir);
  EXPECT_EQ(status, 0) << output;
  EXPECT_NE(output.find("SUCCESS: " + std::to_string(n) + " rules found"), std::string::npos)
      << output;
}

}  // namespace
}  // namespace mailprobe
