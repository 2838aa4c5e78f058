// thor serve, started for real on a free loopback port and spoken to over HTTP: answers equal
// `thor translate` byte for byte (single, array, form, multipart, OpenNMT route, 32
// concurrent clients), every bad request gets its JSON error and status (never 500), a full
// queue answers 503, a slow decode times out with 503, SIGTERM answers what is in flight
// and exits 0, malformed traffic leaves it answering, and the page translates in headless
// Chromium.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "fixtures.h"
#include "process.h"

namespace fs = std::filesystem;
using thor::testing::sh;
using thor::testing::slurp;
using nlohmann::json;

namespace {

// A tiny model trained once for every test here (shared_dir), its test sentences and
// `thor translate`'s output for them (beam 2); `dir` is this process's own directory.
struct Model {
  fs::path dir, ckpt, input;
  std::vector<std::string> lines, expected;
};

const Model& model() {
  static Model m = [] {
    const auto made = thor::testing::shared_dir("serve-model", [](const fs::path& d) {
      thor::testing::make_toy_corpus(d / "train", 300, 61, "en", "de");
      thor::testing::make_toy_corpus(d / "valid", 10, 62, "en", "de");
      thor::testing::make_toy_corpus(d / "test", 24, 63, "en", "de");
      const std::string bin = THOR_BIN;
      EXPECT_EQ(sh(bin + " --threads 1 prepare -s en -t de --trainpref " + (d / "train").string() + " --validpref " +
                   (d / "valid").string() + " --destdir " + (d / "data").string() + " --vocab-size 90 2> " +
                   (d / "prep.log").string()),
                0);
      EXPECT_EQ(sh(bin + " --threads 1 train " + (d / "data").string() +
                   " --encoder-embed-dim 32 --ffn-dim 64 --encoder-layers 1 --decoder-layers 1 --attention-heads 2"
                   " --share-all-embeddings --max-tokens 500 --max-update 200 --lr 5e-3 --warmup-updates 20 --no-eval-bleu"
                   " --no-progress --save-dir " + (d / "ck").string() + " 2> " + (d / "train.log").string()),
                0);
      auto lines = thor::testing::read_file(d / "test.en");
      lines.push_back("");  // a blank line: an empty translation
      thor::testing::write_file(d / "test.en", lines);
      EXPECT_EQ(sh(bin + " --threads 2 translate --beam 2 --model " + (d / "ck" / "checkpoint_last.pt").string() +
                   " --input " + (d / "test.en").string() + " > " + (d / "expected.de").string() + " 2> " +
                   (d / "translate.log").string()),
                0);
    });
    Model m;
    m.dir = thor::testing::temp_dir("serve");
    m.ckpt = made / "ck" / "checkpoint_last.pt";
    m.input = made / "test.en";
    m.lines = thor::testing::read_file(m.input);
    m.expected = thor::testing::read_file(made / "expected.de");
    EXPECT_EQ(m.expected.size(), m.lines.size());
    return m;
  }();
  return m;
}

// `thor serve` on a free port; stopped (SIGTERM) and reaped when it goes out of scope.
struct Server {
  thor::testing::Child child;
  fs::path log;
  int port = 0;
  Server(const std::string& name, std::vector<std::string> extra,
         const std::vector<std::pair<std::string, std::string>>& env = {}) {
    log = model().dir / (name + ".log");
    fs::remove(log);
    std::vector<std::string> args = {"--threads", "2", "serve", "--model", model().ckpt.string(), "--port", "0",
                                     "--beam", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    child = thor::testing::start_thor(args, log.string(), env);
    for (int i = 0; i < 600 && port == 0; ++i) {  // the log names the port once bound
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const auto text = slurp(log);
      const auto at = text.find("listening on http://127.0.0.1:");
      if (at != std::string::npos) port = std::atoi(text.c_str() + at + 30);
    }
    EXPECT_GT(port, 0) << slurp(log);
    for (int i = 0; i < 600; ++i) {
      auto r = client().Get("/ready");
      if (r && r->status == 200) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "not ready: " << slurp(log);
  }
  ~Server() {
    if (child.pid > 0 && ::kill(child.pid, 0) == 0) {
      child.kill(SIGTERM);
      child.wait(std::chrono::seconds(60));
    }
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    return c;
  }
};

json post_json(const Server& s, const std::string& path, const json& body, int* status) {
  auto r = s.client().Post(path.c_str(), body.dump(), "application/json");
  if (!r) {
    *status = -1;
    return json();
  }
  *status = r->status;
  return json::parse(r->body);
}

std::string percent_encoded(const std::string& s) {
  std::string out;
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", ch);
      out += buf;
    }
  }
  return out;
}

std::vector<std::string> nonblank(const std::vector<std::string>& v, size_t n) {
  return std::vector<std::string>(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(std::min(n, v.size())));
}

}  // namespace

TEST(Serve, AnswersEqualThorTranslate) {
  const auto& m = model();
  Server s("serve_equal", {});
  auto c = s.client();
  int status = 0;
  // the whole input as one array: the same translations, in order, blank line included
  auto all = post_json(s, "/translate", {{"q", m.lines}, {"source", "en"}, {"target", "de"}}, &status);
  ASSERT_EQ(status, 200) << all.dump();
  EXPECT_EQ(all.at("translatedText").get<std::vector<std::string>>(), m.expected);
  // one string in, one string out; source "auto" and no target are the model's own
  auto one = post_json(s, "/translate", {{"q", m.lines[3]}, {"source", "auto"}}, &status);
  ASSERT_EQ(status, 200);
  EXPECT_EQ(one.at("translatedText"), m.expected[3]);
  // a form body (application/x-www-form-urlencoded): q once, and q twice (a batch)
  httplib::Params form = {{"q", m.lines[0]}, {"source", "en"}, {"target", "de"}};
  auto f = c.Post("/translate", form);
  ASSERT_TRUE(f);
  ASSERT_EQ(f->status, 200) << f->body;
  EXPECT_EQ(json::parse(f->body).at("translatedText"), m.expected[0]);
  form.emplace("q", m.lines[1]);
  auto f2 = c.Post("/translate", form);
  ASSERT_TRUE(f2);
  EXPECT_EQ(json::parse(f2->body).at("translatedText"), json(std::vector<std::string>{m.expected[0], m.expected[1]}));
  // multipart/form-data, as LibreTranslate's own page may send
  httplib::MultipartFormDataItems items = {{"q", m.lines[2], "", ""}, {"target", "de", "", ""}};
  auto mp = c.Post("/translate", items);
  ASSERT_TRUE(mp);
  ASSERT_EQ(mp->status, 200) << mp->body;
  EXPECT_EQ(json::parse(mp->body).at("translatedText"), m.expected[2]);
  // OpenNMT-py's route: ids echoed, one list per request
  auto onmt = post_json(s, "/translator/translate", json::array({{{"src", m.lines[4]}, {"id", 7}}, {{"src", m.lines[5]}, {"id", 8}}}),
                        &status);
  ASSERT_EQ(status, 200) << onmt.dump();
  ASSERT_EQ(onmt.size(), 1u);
  ASSERT_EQ(onmt[0].size(), 2u);
  EXPECT_EQ(onmt[0][0].at("tgt"), m.expected[4]);
  EXPECT_EQ(onmt[0][0].at("id"), 7);
  EXPECT_EQ(onmt[0][1].at("tgt"), m.expected[5]);
  EXPECT_TRUE(onmt[0][1].at("pred_score").is_number());
  // languages, health, metrics
  auto langs = c.Get("/languages");
  ASSERT_TRUE(langs);
  auto lj = json::parse(langs->body);
  EXPECT_EQ(lj[0].at("code"), "en");
  EXPECT_EQ(lj[0].at("targets"), json::array({"de"}));
  EXPECT_EQ(c.Get("/health")->status, 200);
  auto metrics = c.Get("/metrics")->body;
  EXPECT_NE(metrics.find("thor_requests_total{route=\"/translate\",code=\"200\"} 5"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("thor_requests_total{route=\"/translator/translate\",code=\"200\"} 1"), std::string::npos);
  // sentences decoded: 24 + 1 + 1 + 2 + 1 + 2 (blank lines are not decoded)
  EXPECT_NE(metrics.find("thor_sentences_translated_total 31\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("# TYPE thor_request_duration_seconds histogram"), std::string::npos);
  EXPECT_NE(metrics.find("thor_batch_sentences_bucket{le=\"+Inf\"}"), std::string::npos);
  // one access log line per request
  EXPECT_NE(slurp(s.log).find("\"POST /translate\" 200 25 sentences"), std::string::npos) << slurp(s.log);
}

namespace {

// Continuous batching (the default: sentences join running batches between steps) and
// static batches give every client exactly what `thor translate` gives.
void concurrent_clients(const std::vector<std::string>& flags) {
  const auto& m = model();
  std::vector<std::string> args = {"--max-wait-ms", "20"};
  args.insert(args.end(), flags.begin(), flags.end());
  Server s("serve_concurrent", args);
  const size_t n = m.lines.size() - 1;  // the non-blank lines
  std::atomic<int> answered{0}, wrong{0}, failed{0};
  std::vector<std::thread> clients;
  for (int k = 0; k < 32; ++k)
    clients.emplace_back([&, k] {
      auto c = s.client();
      std::mt19937 rng(static_cast<unsigned>(k));
      for (int r = 0; r < 6; ++r) {
        // 1-3 consecutive lines starting anywhere: answers must come back in request order
        const size_t first = rng() % n, count = 1 + rng() % 3;
        std::vector<std::string> q, want;
        for (size_t i = 0; i < count; ++i) q.push_back(m.lines[(first + i) % n]), want.push_back(m.expected[(first + i) % n]);
        auto res = c.Post("/translate", json({{"q", q}, {"target", "de"}}).dump(), "application/json");
        if (!res || res->status != 200) {
          ++failed;
          ADD_FAILURE() << (res ? "status " + std::to_string(res->status) + ": " + res->body
                                : "no answer: " + httplib::to_string(res.error()));
          continue;
        }
        if (json::parse(res->body).at("translatedText").get<std::vector<std::string>>() != want) ++wrong;
        ++answered;
      }
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(answered.load(), 32 * 6);
  // concurrent requests were batched together: some batch (or step) held more sentences
  // than any one request has (at most 3)
  const auto metrics = s.client().Get("/metrics")->body;
  auto count = [&](const std::string& le) {
    const std::string key = "thor_batch_sentences_bucket{le=\"" + le + "\"} ";
    const auto at = metrics.find(key);
    EXPECT_NE(at, std::string::npos) << metrics;
    return at == std::string::npos ? 0 : std::stoll(metrics.substr(at + key.size()));
  };
  EXPECT_LT(count("4"), count("+Inf")) << metrics;
  // continuous batching: sentences joined batches already being decoded; static: none did
  const std::string key = "\nthor_joined_sentences_total ";
  const auto at = metrics.find(key);
  ASSERT_NE(at, std::string::npos) << metrics;
  const auto joined = std::stoll(metrics.substr(at + key.size()));
  if (flags.empty())
    EXPECT_GT(joined, 0) << metrics;
  else
    EXPECT_EQ(joined, 0) << metrics;
}

}  // namespace

TEST(Serve, ConcurrentClientsGetTheirOwnAnswersInOrder) {
  concurrent_clients({});
  concurrent_clients({"--static-batching"});
}

TEST(Serve, BadRequestsGetTheirStatusAndAJsonError) {
  const auto& m = model();
  Server s("serve_errors", {"--char-limit", "200", "--batch-limit", "5", "--max-body-bytes", "4000"});
  auto c = s.client();
  auto expect = [&](const httplib::Result& r, int status, const std::string& words) {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << r->body;
    json j;
    ASSERT_NO_THROW(j = json::parse(r->body)) << r->body;
    ASSERT_TRUE(j.contains("error")) << r->body;
    EXPECT_NE(j.at("error").get<std::string>().find(words), std::string::npos) << r->body;
  };
  expect(c.Post("/translate", "{\"q\": ", "application/json"), 400, "not valid JSON");
  expect(c.Post("/translate", "[1, 2]", "application/json"), 400, "JSON object");
  expect(c.Post("/translate", "{\"source\": \"en\"}", "application/json"), 400, "missing 'q'");
  expect(c.Post("/translate", "{\"q\": 5}", "application/json"), 400, "string or an array of strings");
  expect(c.Post("/translate", "{\"q\": [\"a\", 5]}", "application/json"), 400, "string or an array of strings");
  expect(c.Post("/translate", "{\"q\": \"a\", \"target\": \"fr\"}", "application/json"), 400, "target language 'fr'");
  expect(c.Post("/translate", "{\"q\": \"a\", \"source\": \"cs\"}", "application/json"), 400, "source language 'cs'");
  expect(c.Post("/translate", "{\"q\": \"a\", \"target\": 3}", "application/json"), 400, "'target' must be a string");
  expect(c.Post("/translate", "{\"q\": \"a\", \"format\": \"html\"}", "application/json"), 400, "format 'html'");
  expect(c.Post("/translate", "{\"q\": \"\xff\xfe\"}", "application/json"), 400, "not valid JSON");
  expect(c.Post("/translate", httplib::Params{{"source", "en"}}), 400, "missing 'q'");
  expect(c.Post("/translate", json({{"q", std::string(201, 'a')}}).dump(), "application/json"), 413, "character limit of 200");
  expect(c.Post("/translate", json({{"q", std::vector<std::string>(6, "a")}}).dump(), "application/json"), 413,
         "batch limit of 5");
  expect(c.Post("/translate", std::string(5000, ' '), "application/json"), 413, "too large");
  expect(c.Post("/translator/translate", "{\"src\": \"a\"}", "application/json"), 400, "JSON array");
  expect(c.Post("/translator/translate", "[{\"id\": 1}]", "application/json"), 400, "\"src\"");
  expect(c.Get("/no/such/route"), 404, "no such route");
  // every status was counted; none was 500, and the server still translates
  const auto metrics = c.Get("/metrics")->body;
  EXPECT_EQ(metrics.find("code=\"500\""), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("thor_requests_total{route=\"/translate\",code=\"400\"} 11"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("thor_requests_total{route=\"/translate\",code=\"413\"} 3"), std::string::npos) << metrics;
  int status = 0;
  auto ok = post_json(s, "/translate", {{"q", m.lines[0]}}, &status);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(ok.at("translatedText"), m.expected[0]);
}

TEST(Serve, FullQueueAnswers503AndSlowDecodingTimesOut) {
  const auto& m = model();
  const auto q3 = nonblank(m.lines, 3);
  {
    // every batch takes >= 400 ms: A (3 sentences) is being decoded, B (3) waits, C (2)
    // would make 5 waiting > --max-queue 4
    Server s("serve_queue", {"--workers", "1", "--max-queue", "4"}, {{"THOR_SERVE_FAULT_DELAY_MS", "400"}});
    std::vector<int> status(3, 0);
    std::vector<std::thread> t;
    for (int k = 0; k < 2; ++k) {
      t.emplace_back([&, k] { post_json(s, "/translate", {{"q", q3}}, &status[static_cast<size_t>(k)]); });
      std::this_thread::sleep_for(std::chrono::milliseconds(120));
    }
    auto c = s.client().Post("/translate", json({{"q", nonblank(m.lines, 2)}}).dump(), "application/json");
    for (auto& th : t) th.join();
    ASSERT_TRUE(c);
    EXPECT_EQ(c->status, 503) << c->body;
    EXPECT_NE(c->body.find("queue full"), std::string::npos) << c->body;
    EXPECT_EQ(c->get_header_value("Retry-After"), "1");
    EXPECT_EQ(status[0], 200);
    EXPECT_EQ(status[1], 200);
    // a request with more sentences than the queue could ever hold: 503 too, never decoded
    auto big = s.client().Post("/translate", json({{"q", nonblank(m.lines, 5)}}).dump(), "application/json");
    ASSERT_TRUE(big);
    EXPECT_EQ(big->status, 503);
  }
  {
    Server s("serve_timeout", {"--workers", "1", "--request-timeout-ms", "150"}, {{"THOR_SERVE_FAULT_DELAY_MS", "600"}});
    int status = 0;
    auto j = post_json(s, "/translate", {{"q", m.lines[0]}}, &status);
    EXPECT_EQ(status, 503);
    EXPECT_NE(j.at("error").get<std::string>().find("timed out after 150 ms"), std::string::npos) << j.dump();
  }
}

TEST(Serve, SigtermAnswersRequestsInFlightAndExitsZero) {
  const auto& m = model();
  Server s("serve_sigterm", {"--workers", "1"}, {{"THOR_SERVE_FAULT_DELAY_MS", "300"}});
  std::vector<int> status(4, 0);
  std::vector<json> body(4);
  std::vector<std::thread> t;
  for (size_t k = 0; k < 4; ++k)
    t.emplace_back([&, k] { body[k] = post_json(s, "/translate", {{"q", m.lines[k]}}, &status[k]); });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  s.child.kill(SIGTERM);
  for (auto& th : t) th.join();
  for (size_t k = 0; k < 4; ++k) {
    EXPECT_EQ(status[k], 200) << k;
    if (status[k] == 200) {
      EXPECT_EQ(body[k].at("translatedText"), m.expected[k]);
    }
  }
  EXPECT_EQ(s.child.wait(std::chrono::seconds(60)), 0) << slurp(s.log);
  s.child.pid = -1;
  EXPECT_NE(slurp(s.log).find("SIGTERM: no new connections"), std::string::npos);
  EXPECT_FALSE(s.client().Get("/health"));  // no longer listening
}

TEST(Serve, MalformedTrafficLeavesItAnswering) {
  const auto& m = model();
  Server s("serve_malformed", {"--read-timeout", "1", "--max-body-bytes", "100000", "--no-access-log"});
  std::mt19937 rng(5);
  auto raw = [&](const std::string& bytes, bool close_early) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(s.port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      (void)!::write(fd, bytes.data(), bytes.size());
      if (!close_early) {
        ::shutdown(fd, SHUT_WR);
        char buf[4096];
        while (::read(fd, buf, sizeof buf) > 0) {
        }
      }
    }
    ::close(fd);
  };
  const std::vector<std::string> bodies = {"{", "{\"q\": [", "{\"q\": {\"a\": 1}}", "null", "[[[[[[[[[[[[[[[[[[[[",
                                           std::string(3000, '['), "{\"q\": \"\\ud800\"}", "{\"q\": 1e999999}"};
  for (int i = 0; i < 200; ++i) {
    std::string req;
    switch (i % 5) {
      case 0: {  // random bytes
        req.resize(1 + rng() % 600);
        for (auto& ch : req) ch = static_cast<char>(rng());
        break;
      }
      case 1: {  // a body that is not what it claims
        const auto& b = bodies[rng() % bodies.size()];
        req = "POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
              std::to_string(b.size()) + "\r\n\r\n" + b;
        break;
      }
      case 2:  // a huge declared length, then silence (the read timeout ends it)
        req = "POST /translate HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{\"q\":";
        break;
      case 3:  // headers cut short
        req = "POST /translate HTTP/1.1\r\nContent-Le";
        break;
      default:  // a bad request line
        req = "TRANSLATE \x01\x02 HTTP/9.9\r\n\r\n";
    }
    raw(req, i % 7 == 0);
  }
  auto c = s.client();
  int status = 0;
  auto ok = post_json(s, "/translate", {{"q", m.lines[1]}}, &status);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(ok.at("translatedText"), m.expected[1]);
  EXPECT_EQ(::kill(s.child.pid, 0), 0) << "the server died";
  EXPECT_EQ(c.Get("/metrics")->body.find("code=\"500\""), std::string::npos);
}

TEST(Serve, PageTranslatesInHeadlessChromium) {
  const auto& m = model();
  const char* chromium = "/usr/bin/chromium";
  ASSERT_TRUE(fs::exists(chromium)) << "Debian's chromium is needed (bash scripts/install-deps.sh installs it)";
  Server s("serve_page", {});
  auto page = s.client().Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->body.find("http://"), std::string::npos) << "the page must make no external request";
  EXPECT_EQ(page->body.find("https://"), std::string::npos);
  const auto dir = model().dir;
  const std::string url = "http://127.0.0.1:" + std::to_string(s.port) + "/?auto=1&q=" +
                          percent_encoded(m.lines[6]);
  const std::string flags = std::string(chromium) +
                            " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run"
                            " --disable-background-networking --disable-component-update --disable-sync"
                            " --virtual-time-budget=15000 --user-data-dir=" +
                            (dir / "chromium-profile").string();
  ASSERT_EQ(sh(flags + " --dump-dom '" + url + "' > " + (dir / "page.html").string() + " 2> " + (dir / "chromium.log").string()), 0)
      << slurp(dir / "chromium.log");
  const auto dom = slurp(dir / "page.html");
  EXPECT_NE(dom.find("data-state=\"done\""), std::string::npos) << dom;
  EXPECT_NE(dom.find("<div id=\"out\" aria-live=\"polite\">" + m.expected[6] + "</div>"), std::string::npos) << dom;
  EXPECT_NE(dom.find("<option value=\"en\">English (en)</option>"), std::string::npos) << dom;
  // and a screenshot of it, kept for a person to look at
  const auto png = dir / "serve-page.png";
  ASSERT_EQ(sh(flags + " --window-size=1000,600 --screenshot=" + png.string() + " '" + url + "' 2>> " +
               (dir / "chromium.log").string()),
            0);
  ASSERT_TRUE(fs::exists(png));
  EXPECT_GT(fs::file_size(png), 10000u);
  std::cout << "[ screenshot ] " << png.string() << "\n";
}
