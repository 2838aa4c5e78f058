// See server.h.
#include "thor/serve/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <csignal>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <set>
#include <thread>

#include "thor/common/error.h"
#include "thor/common/log.h"
#include "thor/common/runtime.h"
#include "thor/common/stop_signals.h"
#include "thor/serve/metrics.h"
#include "thor/serve/page.h"

namespace thor::serve {

namespace {

using Clock = std::chrono::steady_clock;

const char* kJson = "application/json";

// The model and everything a request needs once it is loaded.
struct Loaded {
  DecodingModel dm;
  LoadedModel& lm = dm.lm;
  ModelLanguages langs;
  std::unique_ptr<Batcher> batcher;
};

ModelLanguages model_languages(const nlohmann::json& meta) {
  ModelLanguages l;
  if (!meta.is_object()) return l;
  l.multilingual = meta.value("target_tags", false);
  std::set<std::string> seen_s, seen_t;
  for (const auto& p : meta.value("pairs", nlohmann::json::array())) {
    const auto s = p.value("src", std::string()), t = p.value("tgt", std::string());
    if (!s.empty() && seen_s.insert(s).second) l.sources.push_back(s);
    if (!t.empty() && seen_t.insert(t).second) l.targets.push_back(t);
  }
  if (l.sources.empty() && meta.contains("src_lang")) l.sources.push_back(meta.value("src_lang", std::string()));
  if (l.targets.empty() && meta.contains("tgt_lang")) l.targets.push_back(meta.value("tgt_lang", std::string()));
  return l;
}

// Metric label of a path: the routes, else "other" (a scan of random paths must not grow
// the metrics without bound).
std::string route_label(const std::string& path) {
  static const std::set<std::string> routes = {"/", "/translate", "/translator/translate", "/languages",
                                               "/health", "/ready", "/metrics"};
  return routes.count(path) ? path : "other";
}

// s for a log line: at most n bytes, control bytes and quotes as '?'
std::string printable(const std::string& s, size_t n) {
  std::string out = s.substr(0, n);
  for (auto& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '"') c = '?';
  return s.size() > n ? out + "..." : out;
}

thread_local Clock::time_point t_request_start;
thread_local int64_t t_sentences = 0;

}  // namespace

void run_server(const ServerOptions& opt, const std::function<void(int)>& on_listening) {
  StopSignals signals;  // from here on, SIGTERM / SIGINT ask for a graceful stop
  std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-answer is that connection's end, not the server's
  Metrics metrics;
  std::atomic<bool> ready{false};
  std::unique_ptr<Loaded> loaded;  // set once, before `ready`; read only after `ready`

  httplib::Server svr;
  const auto threads = static_cast<size_t>(std::max<int64_t>(1, opt.http_threads));
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_payload_max_length(static_cast<size_t>(opt.max_body_bytes));
  svr.set_read_timeout(static_cast<time_t>(opt.read_timeout_s), 0);
  svr.set_keep_alive_max_count(1000);
  // Answers go out as soon as written: without TCP_NODELAY a response's body waits behind
  // its headers for the client's delayed ACK (up to 40 ms per request on Linux).
  svr.set_tcp_nodelay(true);

  auto json_error = [](httplib::Response& res, int status, const std::string& message) {
    res.status = status;
    res.set_content(error_answer(message), kJson);
  };
  svr.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    t_request_start = Clock::now();
    t_sentences = 0;
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Counted and logged before the answer is written (httplib's post-routing hook runs in
  // the response writer, for every answer): a client that asks /metrics right after its
  // answer sees its request (httplib's logger runs after the write).
  svr.set_post_routing_handler([&](const httplib::Request& req, httplib::Response& res) {
    // (requests httplib refuses before routing, e.g. a body over the limit, have no start)
    const double secs = t_request_start == Clock::time_point{} ? 0.0
                                                               : std::chrono::duration<double>(Clock::now() - t_request_start).count();
    t_request_start = Clock::time_point{};
    metrics.request(route_label(req.path), res.status, secs);
    if (opt.access_log)
      THOR_LOG("serve") << req.remote_addr << " \"" << printable(req.method, 16) << " " << printable(req.path, 100) << "\" " << res.status
                        << " " << t_sentences << " sentences " << secs * 1e3 << " ms";
  });
  svr.set_error_handler([&](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) {
      const std::string what = res.status == 404   ? "no such route (POST /translate, GET /languages, /health, /ready, /metrics, /)"
                               : res.status == 413 ? "request body too large (--max-body-bytes " + std::to_string(opt.max_body_bytes) + ")"
                               : res.status == 405 ? "method not allowed"
                               : res.status == 400 ? "bad request"
                                                   : "HTTP error " + std::to_string(res.status);
      res.set_content(error_answer(what), kJson);
    }
  });
  svr.set_exception_handler([&](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    THOR_WARN("serve") << req.method << " " << route_label(req.path) << ": internal error: " << what;
    json_error(res, 500, "internal error");
  });

  // One translation request, LibreTranslate or OpenNMT shaped.
  auto translate = [&](const httplib::Request& req, httplib::Response& res, bool opennmt) {
    if (!ready) return json_error(res, 503, "the model is still loading (see GET /ready)");
    metrics.add_inflight(1);
    struct Done {
      Metrics& m;
      ~Done() { m.add_inflight(-1); }
    } done{metrics};
    TranslateRequest tr;
    try {
      if (opennmt) {
        tr = parse_opennmt(req.body, opt.limits, loaded->langs);
      } else {
        std::multimap<std::string, std::string> form;
        const auto ct = req.get_header_value("Content-Type");
        if (req.is_multipart_form_data()) {
          for (const auto& [k, f] : req.files) form.emplace(k, f.content);
        } else if (ct.rfind("application/x-www-form-urlencoded", 0) == 0) {
          httplib::Params params;
          httplib::detail::parse_query_text(req.body, params);
          for (const auto& [k, v] : params) form.emplace(k, v);
        }
        tr = parse_libretranslate(ct, req.body, form, opt.limits, loaded->langs);
      }
    } catch (const ApiError& e) {
      return json_error(res, e.status(), e.what());
    }
    int prefix = -1;
    try {
      prefix = target_lang_prefix(loaded->lm.train_state.value("meta", nlohmann::json()), loaded->lm.vocab, tr.target);
    } catch (const Error& e) {
      return json_error(res, 400, e.what());
    }
    t_sentences = static_cast<int64_t>(tr.texts.size());
    auto sources = encode_sources(loaded->lm.vocab, tr.texts, prefix, loaded->lm.config.max_positions);
    std::shared_ptr<Job> job;
    try {
      job = loaded->batcher->submit(std::move(sources));
    } catch (const QueueFull& e) {
      res.set_header("Retry-After", "1");
      return json_error(res, 503, e.what());
    }
    if (!job->wait_until(t_request_start + std::chrono::milliseconds(opt.request_timeout_ms))) {
      job->cancel();
      return json_error(res, 503, "timed out after " + std::to_string(opt.request_timeout_ms) +
                                      " ms (--request-timeout-ms); the server is overloaded");
    }
    if (!job->error().empty()) return json_error(res, 500, "decoding failed: " + job->error());
    std::vector<std::string> texts;
    std::vector<double> scores;
    for (const auto& t : job->translations()) texts.push_back(t.text), scores.push_back(t.score);
    res.set_content(opennmt ? opennmt_answer(tr, texts, scores) : libretranslate_answer(tr, texts), kJson);
  };
  svr.Post("/translate", [&](const httplib::Request& req, httplib::Response& res) { translate(req, res, false); });
  svr.Post("/translator/translate", [&](const httplib::Request& req, httplib::Response& res) { translate(req, res, true); });
  svr.Get("/languages", [&](const httplib::Request&, httplib::Response& res) {
    if (!ready) return json_error(res, 503, "the model is still loading (see GET /ready)");
    res.set_content(languages_answer(loaded->langs), kJson);
  });
  svr.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.set_content("{\"status\":\"ok\"}", kJson); });
  svr.Get("/ready", [&](const httplib::Request&, httplib::Response& res) {
    if (ready) return res.set_content("{\"status\":\"ready\"}", kJson);
    json_error(res, 503, "the model is still loading");
  });
  svr.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.text(), "text/plain; version=0.0.4; charset=utf-8");
  });
  svr.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content(kPage, "text/html; charset=utf-8"); });

  // cpp-httplib listens with a backlog of 5: a burst of clients overflows it (the kernel
  // then drops or cookie-answers their connections; 32 concurrent clients lost requests).
  // Its socket is kept here as it is made, and listen() again raises the backlog.
  std::atomic<int> listen_fd{-1};
  svr.set_socket_options([&listen_fd](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_fd = sock;
  });
  const int port = opt.port == 0 ? svr.bind_to_any_port(opt.host) : (svr.bind_to_port(opt.host, opt.port) ? opt.port : -1);
  if (port <= 0)
    throw Error("serve: cannot listen on " + opt.host + ":" + std::to_string(opt.port) +
                " (--host/--port: address in use or not this machine's?)");
  if (listen_fd >= 0) ::listen(listen_fd, SOMAXCONN);
  THOR_LOG("serve") << "listening on http://" << opt.host << ":" << port << " (loading " << opt.model.model_path << ")";
  if (on_listening) on_listening(port);
  std::atomic<bool> http_done{false};
  std::thread http([&] {
    svr.listen_after_bind();
    http_done = true;
  });
  // stops the HTTP server on the first signal (and on a failed load, below)
  std::atomic<bool> watching{true};
  std::thread watcher([&] {
    while (watching && !StopSignals::requested()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (StopSignals::requested())
      THOR_LOG("serve") << signal_name(StopSignals::requested()) << ": no new connections; answering the "
                        << metrics.inflight() << " requests in flight";
    // stop() only acts on a running server: wait for the listening thread to get there
    for (int i = 0; i < 500 && !svr.is_running() && !http_done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    svr.stop();
  });
  auto finish = [&] {
    watching = false;
    watcher.join();
    http.join();
    if (loaded && loaded->batcher) loaded->batcher->shutdown();
  };

  try {
    auto l = std::make_unique<Loaded>();
    l->dm = load_for_decoding(opt.model);
    const auto dev = l->dm.device;
    l->langs = model_languages(l->lm.train_state.value("meta", nlohmann::json()));
    const TranslateOptions& topt = l->dm.decode;
    // warm-up: one sentence through the decoder (allocations, converted weights)
    {
      const int prefix = l->langs.multilingual && !l->langs.targets.empty()
                             ? target_lang_prefix(l->lm.train_state.value("meta", nlohmann::json()), l->lm.vocab,
                                                  l->langs.targets.front())
                             : -1;
      TranslateOptions w = topt;
      w.workers = 1;
      translate_sources(l->lm.model, l->lm.vocab, encode_sources(l->lm.vocab, {"warm up"}, prefix, l->lm.config.max_positions),
                        w, dev);
    }
    BatcherOptions bo = opt.batcher;
    bo.workers = topt.workers > 0 ? topt.workers : dev.is_cpu() ? at::get_num_threads() : 1;
    if (const char* d = std::getenv("THOR_SERVE_FAULT_DELAY_MS")) bo.fault_delay_ms = std::atoll(d);
    l->batcher = std::make_unique<Batcher>(l->lm.model, l->lm.vocab, topt, bo, metrics, dev);
    THOR_LOG("serve") << "ready: " << l->lm.config.arch << " (" << l->lm.config.num_experts << " expert"
                      << (l->lm.config.num_experts > 1 ? "s, --expert-select " + opt.model.expert_select : "") << ") on " << dev
                      << ", " << bo.workers << " decoding workers, beam " << topt.search.beam << ", "
                      << (bo.batching ? std::string(l->batcher->continuous() ? "continuous" : "static") +
                                            " batches of <= " + std::to_string(bo.max_batch_tokens) +
                                            " tokens, wait <= " + std::to_string(bo.max_wait_ms) + " ms"
                                      : std::string("no batching across requests"));
    loaded = std::move(l);
    ready = true;
    metrics.set_ready(true);
  } catch (...) {
    finish();
    throw;
  }
  while (!StopSignals::requested() && !http_done) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  finish();
  THOR_LOG("serve") << "stopped";
}

}  // namespace thor::serve
