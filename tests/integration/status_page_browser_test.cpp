// The status page as a browser renders it: `mailprobed run` against the loopback Dovecot and
// Postfix with one thing broken (the endpoints on 127.0.0.4, whose certificate has expired), its
// page loaded in headless Chromium (--dump-dom), and the DOM parsed (libxml2's HTML parser, XPath):
// the profile x direction grid comes first, each cell in the state and with the reason the
// verdicts have, the same as /status.json says, and the failing cells' sentences say since when.

#include <libxml/HTMLparser.h>
#include <libxml/xpath.h>
#include <signal.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "daemon/profiles.h"
#include "tests/fakes/headless_chromium.h"
#include "tests/fakes/mail_env.h"
#include "tests/fakes/mail_env_config.h"
#include "tests/fakes/subprocess.h"
#include "tests/fault/fault_server.h"

namespace mailprobe {
namespace {

using namespace std::chrono_literals;
using testing::httpGet;
using testing::Subprocess;

// ---------------------------------------------------------------------------------------------
// The DOM, read with libxml2.

struct XmlDocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
struct XPathContextFree {
  void operator()(xmlXPathContext* c) const { xmlXPathFreeContext(c); }
};
struct XPathObjectFree {
  void operator()(xmlXPathObject* o) const { xmlXPathFreeObject(o); }
};

class Dom {
 public:
  explicit Dom(const std::string& html)
      : doc_(htmlReadMemory(html.data(), static_cast<int>(html.size()), "status.html", "UTF-8",
                            HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET)),
        xpath_(doc_ ? xmlXPathNewContext(doc_.get()) : nullptr) {}

  bool ok() const { return doc_ != nullptr && xpath_ != nullptr; }

  // The element nodes `expression` selects, relative to `from` (the document when null).
  std::vector<xmlNode*> select(const std::string& expression, xmlNode* from = nullptr) const {
    xpath_->node = from != nullptr ? from : xmlDocGetRootElement(doc_.get());
    std::unique_ptr<xmlXPathObject, XPathObjectFree> result(
        xmlXPathEvalExpression(reinterpret_cast<const xmlChar*>(expression.c_str()), xpath_.get()));
    std::vector<xmlNode*> out;
    if (result && result->nodesetval != nullptr) {
      for (int i = 0; i < result->nodesetval->nodeNr; ++i) {
        out.push_back(result->nodesetval->nodeTab[i]);
      }
    }
    return out;
  }

  // The text content of the element, white space collapsed.
  static std::string text(xmlNode* n) {
    if (n == nullptr) {
      return "";
    }
    xmlChar* raw = xmlNodeGetContent(n);
    std::string s = raw != nullptr ? reinterpret_cast<const char*>(raw) : "";
    xmlFree(raw);
    return collapse(s);
  }

  static std::string collapse(const std::string& s) {
    std::string out;
    for (char c : s) {
      bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
      if (space && (out.empty() || out.back() == ' ')) {
        continue;
      }
      out += space ? ' ' : c;
    }
    while (!out.empty() && out.back() == ' ') {
      out.pop_back();
    }
    return out;
  }

  // The text of the element's children but those named `except`, white space collapsed.
  static std::string textWithout(xmlNode* n, const std::string& except) {
    std::string all;
    for (xmlNode* child = n->children; child != nullptr; child = child->next) {
      if (child->type == XML_ELEMENT_NODE && name(child) == except) {
        continue;
      }
      all += " " + text(child);
    }
    return collapse(all);
  }

  static std::string attribute(xmlNode* n, const char* name) {
    xmlChar* raw = xmlGetProp(n, reinterpret_cast<const xmlChar*>(name));
    std::string s = raw != nullptr ? reinterpret_cast<const char*>(raw) : "";
    xmlFree(raw);
    return s;
  }

  static std::string name(xmlNode* n) {
    return n != nullptr ? reinterpret_cast<const char*>(n->name) : "";
  }

 private:
  std::unique_ptr<xmlDoc, XmlDocFree> doc_;
  std::unique_ptr<xmlXPathContext, XPathContextFree> xpath_;
};

// One cell of the grid as the page shows it.
struct Cell {
  std::string state;   // data-state: "ok", "fails", "unknown"; "none" for a direction without sides
  std::string reason;  // the <code> of a failing cell
  std::string sentence;  // the <small>
  bool operator==(const Cell&) const = default;
};

std::ostream& operator<<(std::ostream& o, const Cell& c) {
  return o << "{" << c.state << ", " << c.reason << ", \"" << c.sentence << "\"}";
}

// ---------------------------------------------------------------------------------------------

// A client profile that names an endpoint the config does not probe (IMAP 995): the results
// cannot tell, and the grid says so. It has no outgoing side: that cell is empty.
ClientProfile notProbed() {
  ClientSide side;
  side.port = 995;
  side.security = Security::Tls;
  ClientProfile p;
  p.id = "not-probed";
  p.incoming = {side};
  return p;
}

class StatusPageBrowserTest : public testing::MailEnvSuite {
 protected:
  void SetUp() override {
    MailEnvSuite::SetUp();
    if (IsSkipped() || HasFatalFailure()) {
      return;
    }
    std::string why;
    chromium_ = testing::HeadlessChromium::find(&why);
    if (chromium_.empty()) {
      GTEST_SKIP() << why;
    }
    port_ = testing::freeLoopbackPort();
  }

  // "profile/direction" -> the cell /status.json implies.
  static std::map<std::string, Cell> cellsOf(const nlohmann::json& status) {
    std::map<std::string, Cell> out;
    for (const auto& v : status["profiles"]) {
      Cell c;
      c.state = !v["known"].get<bool>() ? "unknown" : v["ok"].get<bool>() ? "ok" : "fails";
      c.reason = c.state == "fails" ? v["reason"].get<std::string>() : "";
      c.sentence = v["sentence"];
      out[v["profile"].get<std::string>() + "/" + v["direction"].get<std::string>()] = c;
    }
    return out;
  }

  std::string chromium_;
  uint16_t port_ = 0;
};

TEST_F(StatusPageBrowserTest, TheGridComesFirstWithEachCellAsTheVerdictsSay) {
  // Four built-ins on the servers' ports; legacy-tls10 left out: its verdict waits for the
  // TLS version scan, which the daemon runs only within a minute of start.
  std::vector<ClientProfile> profiles;
  for (const char* id : {"android-guide", "thunderbird", "ios-mail", "outlook"}) {
    profiles.push_back(*findBuiltinProfile(id));
  }
  profiles.push_back(notProbed());
  const std::string config = env()->dir() + "/browser-" + std::to_string(port_) + ".toml";
  std::ofstream(config) << "[daemon]\nlisten = \"127.0.0.1:" << std::to_string(port_) << "\"\n\n"
                        << testing::platformConfigToml(
                               *env(), env()->value("EXPIRED_IP"),
                               "interval = \"2s\"\ntimeout = \"10s\"\nphase_timeout = \"3s\"\n")
                        << "\n[profiles]\ndisable = [\"legacy-tls10\"]\n"
                        << testing::profilesToml(*env(), profiles);
  Subprocess daemon({MAILPROBED_BIN, "run", "--config", config}, {},
                    env()->dir() + "/browser-" + std::to_string(port_) + ".log");
  ASSERT_TRUE(daemon.started());

  // The verdicts, once every probed endpoint has run.
  auto judged = [](const nlohmann::json& j) {
    if (!j.contains("profiles") || j["profiles"].size() != 9) {
      return false;
    }
    for (const auto& v : j["profiles"]) {
      if (v["profile"] != "not-probed" && !v["known"].get<bool>()) {
        return false;
      }
    }
    return true;
  };
  nlohmann::json status;
  ASSERT_TRUE(testing::waitForStatusJson(port_, judged, 30s, &status))
      << status.dump(2) << daemon.output();

  // The expired certificate stops every strict client; the guide's phones accept all
  // certificates and go on.
  std::map<std::string, std::string> expected_state{
      {"android-guide/incoming", "ok"},  {"android-guide/outgoing", "ok"},
      {"thunderbird/incoming", "fails"}, {"thunderbird/outgoing", "fails"},
      {"ios-mail/incoming", "fails"},    {"ios-mail/outgoing", "fails"},
      {"outlook/incoming", "fails"},     {"outlook/outgoing", "fails"},
      {"not-probed/incoming", "unknown"}};
  std::map<std::string, Cell> json_cells = cellsOf(status);
  std::map<std::string, std::string> json_states;
  for (const auto& [key, cell] : json_cells) {
    json_states[key] = cell.state;
    if (cell.state == "fails") {
      EXPECT_EQ(cell.reason, "cert_expired") << key;
    }
  }
  ASSERT_EQ(json_states, expected_state) << status["profiles"].dump(2);

  // A failing verdict keeps the time it started failing across runs, and its sentence says it
  // (the "... since 02:14"). Two more runs (2 s apart), then the same `since`.
  std::map<std::string, std::string> since;
  for (const auto& v : status["profiles"]) {
    since[v["profile"].get<std::string>() + "/" + v["direction"].get<std::string>()] =
        v["since"].get<std::string>();
  }
  std::this_thread::sleep_for(4500ms);
  ASSERT_EQ(httpGet(port_, "/status.json").status, 200);
  status = nlohmann::json::parse(httpGet(port_, "/status.json").body, nullptr, false);
  ASSERT_FALSE(status.is_discarded());
  for (const auto& v : status["profiles"]) {
    if (v["known"].get<bool>() && !v["ok"].get<bool>()) {
      std::string key = v["profile"].get<std::string>() + "/" + v["direction"].get<std::string>();
      std::string iso = v["since"];  // 2026-11-26T02:14:05Z
      EXPECT_EQ(iso, since[key]) << key;
      std::string sentence = v["sentence"];
      std::string same_day = " since " + iso.substr(11, 5) + " UTC";
      std::string other_day = " since " + iso.substr(0, 10) + " " + iso.substr(11, 5) + " UTC";
      EXPECT_TRUE(sentence.ends_with(same_day) || sentence.ends_with(other_day)) << sentence;
    }
  }
  // One log line per change, not one per run.
  const std::string log = daemon.output();
  size_t lines = 0;
  for (size_t at = log.find("CLIENT FAILS: thunderbird cannot read mail"); at != std::string::npos;
       at = log.find("CLIENT FAILS: thunderbird cannot read mail", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u) << log;

  // The page, as Chromium renders it.
  testing::HeadlessChromium browser(chromium_);
  const std::string url = "http://127.0.0.1:" + std::to_string(port_) + "/";
  testing::ChromiumRun run = browser.dumpDom(url, 60s);
  ASSERT_TRUE(run.finished) << "chromium did not finish within 60 s\n" << run.log;
  ASSERT_EQ(run.exit_code, 0) << run.log;
  EXPECT_EQ(run.leftover, 0) << "chromium processes left running";
  // What the daemon said at the time of the page, to compare cell by cell.
  nlohmann::json after = nlohmann::json::parse(httpGet(port_, "/status.json").body, nullptr, false);
  ASSERT_FALSE(after.is_discarded());
  if (const char* shot = std::getenv("MAILPROBE_SCREENSHOT")) {
    // For a person to look at the layout; nothing is asserted on it.
    EXPECT_TRUE(browser.screenshot(url, shot, 60s).finished);
  }

  Dom dom(run.output);
  ASSERT_TRUE(dom.ok()) << run.output.substr(0, 2000);
  ASSERT_EQ(dom.select("//body").size(), 1u) << run.output.substr(0, 2000);
  // First on the page: the body holds the header (the overall line), then main, whose first
  // element is the grid; no section comes before it.
  std::vector<xmlNode*> body = dom.select("//body/*");
  ASSERT_GE(body.size(), 2u);
  EXPECT_EQ(Dom::name(body[0]), "header");
  EXPECT_TRUE(dom.select("section", body[0]).empty());
  EXPECT_EQ(Dom::name(body[1]), "main");
  std::vector<xmlNode*> main_children = dom.select("*", body[1]);
  ASSERT_FALSE(main_children.empty());
  EXPECT_EQ(Dom::name(main_children[0]), "section");
  EXPECT_EQ(Dom::attribute(main_children[0], "id"), "profiles");
  std::vector<xmlNode*> sections = dom.select("//section");
  ASSERT_FALSE(sections.empty());
  EXPECT_EQ(Dom::attribute(sections[0], "id"), "profiles");

  std::vector<xmlNode*> grid = dom.select("//section[@id='profiles']/table");
  ASSERT_EQ(grid.size(), 1u);
  std::vector<std::string> headers;
  for (xmlNode* th : dom.select("thead/tr/th", grid[0])) {
    headers.push_back(Dom::text(th));
  }
  EXPECT_EQ(headers, (std::vector<std::string>{"Profile", "Read mail", "Send mail"}));

  // Row by row: the profile, then the two directions.
  std::map<std::string, Cell> page;
  std::vector<std::string> rows;
  for (xmlNode* tr : dom.select("tbody/tr", grid[0])) {
    std::vector<xmlNode*> th = dom.select("th[@scope='row']", tr);
    std::vector<xmlNode*> td = dom.select("td", tr);
    ASSERT_EQ(th.size(), 1u);
    ASSERT_EQ(td.size(), 2u) << Dom::text(tr);
    std::string profile = Dom::text(th[0]);
    rows.push_back(profile);
    for (size_t i = 0; i < 2; ++i) {
      Cell c;
      c.state = Dom::attribute(td[i], "data-state");
      if (c.state.empty()) {
        EXPECT_EQ(Dom::attribute(td[i], "class"), "na");
        continue;  // a direction the profile has no server for
      }
      std::vector<xmlNode*> code = dom.select("code", td[i]);
      c.reason = code.empty() ? "" : Dom::text(code[0]);
      std::vector<xmlNode*> small = dom.select("small", td[i]);
      EXPECT_EQ(small.size(), 1u);
      c.sentence = small.empty() ? "" : Dom::text(small[0]);
      // What a person reads first, and the colour class, agree with the state.
      EXPECT_EQ(Dom::textWithout(td[i], "small"), c.state == "ok"      ? "works"
                                                  : c.state == "fails" ? "fails " + c.reason
                                                                       : c.state)
          << Dom::text(td[i]);
      EXPECT_EQ(Dom::attribute(td[i], "class"), c.state == "ok"      ? "ok"
                                                : c.state == "fails" ? "bad"
                                                                     : "pending");
      page[profile + (i == 0 ? "/incoming" : "/outgoing")] = c;
    }
  }
  EXPECT_EQ(rows, (std::vector<std::string>{"android-guide", "thunderbird", "ios-mail", "outlook",
                                            "not-probed"}));
  std::map<std::string, std::string> page_states;
  for (const auto& [key, cell] : page) {
    page_states[key] = cell.state;
  }
  EXPECT_EQ(page_states, expected_state);
  // Cell by cell, the page says what /status.json says: state, reason, sentence.
  EXPECT_EQ(page, cellsOf(after));
  EXPECT_EQ(page["thunderbird/incoming"].reason, "cert_expired");
  EXPECT_TRUE(page["ios-mail/outgoing"].sentence.starts_with(
      "ios-mail cannot send: smtp " + std::to_string(env()->submissionPort()) +
      " (starttls) presents an expired certificate since "))
      << page["ios-mail/outgoing"].sentence;
  EXPECT_EQ(page["not-probed/incoming"].sentence,
            "not-probed: cannot tell whether it can read mail: imap 995 (tls) is not probed: no "
            "such endpoint in the configuration");

  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(6s).value_or(-1), 0);
}

// A page that never loads (a server that accepts and never answers): the run is cut at its
// timeout, every process of it killed, its directory removed.
TEST(HeadlessChromiumTest, ATimeoutKillsEveryProcessAndRemovesTheDirectory) {
  std::string why;
  std::string binary = testing::HeadlessChromium::find(&why);
  if (binary.empty()) {
    GTEST_SKIP() << why;
  }
  auto runDirs = [] {
    std::set<std::string> dirs;
    for (const auto& e :
         std::filesystem::directory_iterator(std::filesystem::temp_directory_path())) {
      if (e.path().filename().string().starts_with("mailprobe-chromium.")) {
        dirs.insert(e.path().string());
      }
    }
    return dirs;
  };
  std::set<std::string> before = runDirs();
  testing::FaultServer silent({.fault = testing::Fault::Silent});
  auto started = std::chrono::steady_clock::now();
  testing::ChromiumRun run = testing::HeadlessChromium(binary).dumpDom(
      "http://127.0.0.1:" + std::to_string(silent.port()) + "/", 3s);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_FALSE(run.finished) << run.output << run.log;
  EXPECT_GE(silent.connections(), 1u) << "chromium never asked for the page";
  EXPECT_EQ(run.leftover, 0);
  EXPECT_LT(seconds, 3.0 + 6.0);  // the timeout, then at most the clean-up's bound
  EXPECT_EQ(runDirs(), before);
}

}  // namespace
}  // namespace mailprobe
