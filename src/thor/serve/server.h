// thor serve: an HTTP translation service (cpp-httplib) over the batcher. Routes:
//   POST /translate             LibreTranslate's API (JSON or form body)
//   POST /translator/translate  OpenNMT-py's REST API
//   GET  /languages             the model's language pairs
//   GET  /health                alive (200 while the process runs)
//   GET  /ready                 200 once the model is loaded and warmed up, else 503
//   GET  /metrics               Prometheus text format
//   GET  /                      a page to try it in a browser
// Listens first (so /health answers while the model loads); SIGTERM / SIGINT stop accepting
// connections, answer the requests in flight, decode what is queued and return (a second
// signal ends the process at once). One access log line per request on stderr.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "thor/serve/api.h"
#include "thor/serve/batcher.h"
#include "thor/train/decoding_model.h"

namespace thor::serve {

struct ServerOptions {
  DecodingSettings model;          // as `thor translate` loads and decodes
  std::string host = "127.0.0.1";  // loopback unless asked otherwise
  int port = 5000;                 // 0: any free port (the log line names it)
  BatcherOptions batcher;
  ApiLimits limits;
  int64_t request_timeout_ms = 30000;  // a request still waiting then is answered 503
  int64_t http_threads = 256;          // connections served at once (a keep-alive client holds one)
  int64_t max_body_bytes = 1 << 20;    // larger bodies: 413
  int64_t read_timeout_s = 5;          // a client silent this long is disconnected
  bool access_log = true;
};

// Runs until a stop signal; throws thor::Error when the model cannot be loaded or the port
// cannot be bound. `on_listening(port)` (optional) is called once bound.
void run_server(const ServerOptions& opt, const std::function<void(int)>& on_listening = {});

}  // namespace thor::serve
