// Load generator for thor serve (bench/serve.sh drives it): N concurrent clients, each with
// its own keep-alive connection, send the lines of an input file (K per request) to
// POST /translate until every line was sent R times over all clients; reports sentences/s
// and the p50 / p99 request latency as one JSON line on stdout, and checks every answer
// against an expected file (thor translate's output) when given. --malformed N instead
// sends N malformed requests (random bytes, huge bodies, bad JSON, cut-off and slow
// clients) over raw sockets, then checks the server still answers a good request.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// One raw connection: send bytes (optionally slowly), read until closed or 3 s pass.
void raw_request(int port, const std::string& bytes, int delay_ms_per_chunk) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    if (delay_ms_per_chunk > 0) {
      for (size_t i = 0; i < bytes.size(); i += 8) {
        (void)!::write(fd, bytes.data() + i, std::min<size_t>(8, bytes.size() - i));
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_per_chunk));
      }
    } else {
      (void)!::write(fd, bytes.data(), bytes.size());
    }
    ::shutdown(fd, SHUT_WR);
    char buf[4096];
    while (::read(fd, buf, sizeof buf) > 0) {
    }
  }
  ::close(fd);
}

std::string malformed(std::mt19937& rng, int kind) {
  static const std::vector<std::string> bodies = {
      "{", "{\"q\": [", "{\"q\": {\"a\": 1}}", "null", std::string(5000, '['), "{\"q\": \"\\ud800\"}",
      "{\"q\": 1e999999}", "{\"q\": \"a\", \"target\": []}", "q=%zz&target=%", "{\"q\": [\"\xff\xfe\"]}"};
  switch (kind) {
    case 0: {  // random bytes
      std::string s(1 + rng() % 2000, ' ');
      for (auto& c : s) c = static_cast<char>(rng());
      return s;
    }
    case 1: {  // a body that is not what it should be
      const auto& b = bodies[rng() % bodies.size()];
      const char* type = rng() % 2 ? "application/json" : "application/x-www-form-urlencoded";
      return "POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: " + std::string(type) +
             "\r\nContent-Length: " + std::to_string(b.size()) + "\r\n\r\n" + b;
    }
    case 2: {  // a huge body (over --max-body-bytes), really sent
      const std::string b(2 << 20, 'a');
      return "POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
             std::to_string(b.size()) + "\r\n\r\n" + b;
    }
    case 3:  // a declared length never sent
      return "POST /translate HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{\"q\":";
    case 4:  // cut-off headers
      return "POST /translate HTTP/1.1\r\nContent-Le";
    default:  // bad request lines and header floods
      return rng() % 2 ? "TRANSLATE \x01\x02 HTTP/9.9\r\n\r\n"
                       : "GET / HTTP/1.1\r\n" + std::string(20000, 'X') + ": y\r\n\r\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"load generator for thor serve"};
  int port = 5000, clients = 8, per_request = 1, repeat = 1, malformed_n = 0;
  std::string input, expected, target = "de";
  app.add_option("--port", port)->required();
  app.add_option("--input", input, "sentences, one per line");
  app.add_option("--expected", expected, "thor translate's output for --input (answers are checked)");
  app.add_option("--clients", clients, "concurrent clients");
  app.add_option("--per-request", per_request, "sentences per request (an array when > 1)");
  app.add_option("--repeat", repeat, "times every line is sent");
  app.add_option("--target", target);
  app.add_option("--malformed", malformed_n, "send this many malformed requests instead");
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGPIPE, SIG_IGN);  // a server closing a connection mid-body is an answer here

  if (malformed_n > 0) {
    std::atomic<int> next{0};
    std::vector<std::thread> ts;
    const auto t0 = Clock::now();
    for (int c = 0; c < clients; ++c)
      ts.emplace_back([&, c] {
        std::mt19937 rng(static_cast<unsigned>(c + 1));
        for (int i = next++; i < malformed_n; i = next++) {
          const int kind = i % 7;
          raw_request(port, malformed(rng, kind == 6 ? 1 : kind), kind == 6 ? 20 : 0);  // 6: slow client
        }
      });
    for (auto& t : ts) t.join();
    httplib::Client cli("127.0.0.1", port);
    cli.set_read_timeout(60, 0);
    auto ok = cli.Post("/translate", json({{"q", "A dog runs."}, {"target", target}}).dump(), "application/json");
    auto health = cli.Get("/health");
    json out = {{"malformed", malformed_n},
                {"seconds", std::chrono::duration<double>(Clock::now() - t0).count()},
                {"good_request_after", ok ? ok->status : -1},
                {"health_after", health ? health->status : -1}};
    std::printf("%s\n", out.dump().c_str());
    return ok && ok->status == 200 ? 0 : 1;
  }

  const auto lines = read_lines(input);
  const auto want = expected.empty() ? std::vector<std::string>() : read_lines(expected);
  // the work: (first line, count) chunks of per_request consecutive lines, every line repeat times
  std::vector<std::pair<size_t, size_t>> chunks;
  for (int r = 0; r < repeat; ++r)
    for (size_t i = 0; i < lines.size(); i += static_cast<size_t>(per_request))
      chunks.push_back({i, std::min(lines.size() - i, static_cast<size_t>(per_request))});
  std::atomic<size_t> next{0};
  std::atomic<int64_t> sentences{0}, errors{0}, mismatches{0};
  std::mutex mu;
  std::vector<double> latencies;
  const auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int c = 0; c < clients; ++c)
    ts.emplace_back([&] {
      httplib::Client cli("127.0.0.1", port);
      cli.set_keep_alive(true);
      cli.set_tcp_nodelay(true);  // as curl and most HTTP clients: no Nagle delay on the request's body
      cli.set_read_timeout(300, 0);
      std::vector<double> mine;
      for (size_t k = next++; k < chunks.size(); k = next++) {
        const auto [first, n] = chunks[k];
        json q;
        if (per_request == 1) q = lines[first];
        else q = std::vector<std::string>(lines.begin() + static_cast<std::ptrdiff_t>(first),
                                          lines.begin() + static_cast<std::ptrdiff_t>(first + n));
        const auto s0 = Clock::now();
        auto res = cli.Post("/translate", json({{"q", q}, {"target", target}}).dump(), "application/json");
        mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s0).count());
        if (!res || res->status != 200) {
          if (errors++ < 3)  // the first few, so a failed run says why
            std::fprintf(stderr, "serve_load: request for line %zu: %s\n", first + 1,
                         res ? ("status " + std::to_string(res->status) + ": " + res->body).c_str()
                             : ("no answer: " + httplib::to_string(res.error())).c_str());
          continue;
        }
        sentences += static_cast<int64_t>(n);
        if (!want.empty()) {
          auto got = json::parse(res->body).at("translatedText");
          for (size_t i = 0; i < n; ++i) {
            const auto text = (per_request == 1 ? got : got[i]).get<std::string>();
            if (text != want[first + i] && mismatches++ < 3)
              std::fprintf(stderr, "serve_load: line %zu: got '%s', thor translate gave '%s'\n", first + i + 1,
                           text.c_str(), want[first + i].c_str());
          }
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
    });
  for (auto& t : ts) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  json out = {{"clients", clients},
              {"per_request", per_request},
              {"requests", latencies.size()},
              {"sentences", sentences.load()},
              {"seconds", secs},
              {"sentences_per_s", static_cast<double>(sentences.load()) / secs},
              {"p50_ms", percentile(latencies, 0.50)},
              {"p99_ms", percentile(latencies, 0.99)},
              {"errors", errors.load()},
              {"mismatches", want.empty() ? json() : json(mismatches.load())}};
  std::printf("%s\n", out.dump().c_str());
  return errors.load() == 0 && mismatches.load() == 0 ? 0 : 1;
}
