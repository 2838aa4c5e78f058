// `thor serve --model PATH`: the HTTP translation service (src/thor/serve/server.h).
#include "cli/commands.h"
#include "cli/decoding.h"
#include "thor/common/error.h"
#include "thor/serve/server.h"

namespace thor::cli {

void add_serve(CLI::App& app, Common& common) {
  auto* cmd = app.add_subcommand("serve", "serve a checkpoint over HTTP (LibreTranslate and OpenNMT APIs, metrics, a page)");
  static serve::ServerOptions o;
  add_decoding_options(cmd, o.model);
  cmd->add_option("--host", o.host, "address to listen on (loopback by default)")->capture_default_str();
  cmd->add_option("--port", o.port, "port (0: any free one, named in the log)")->capture_default_str()->check(CLI::Range(0, 65535));
  cmd->add_option("--max-batch-tokens", o.batcher.max_batch_tokens,
                  "dynamic batching: padded source tokens per batch, over concurrent requests")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-wait-ms", o.batcher.max_wait_ms, "dynamic batching: the longest a sentence waits for its batch to fill")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  static bool no_batching = false;
  cmd->add_flag("--no-batching", no_batching, "decode every request alone (no batching across requests)");
  cmd->add_option("--join-min", o.batcher.join_min,
                  "continuous batching: queued sentences join a running batch in groups of at least this many...")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--join-wait-ms", o.batcher.join_wait_ms, "...or once the oldest of them has waited this long")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  static bool static_batching = false;
  cmd->add_flag("--static-batching", static_batching,
                "decode each batch whole before taking the next (default: continuous batching, sentences join a "
                "running batch between decoding steps and are answered the step they finish; always static with "
                "--shortlist)");
  cmd->add_option("--max-queue", o.batcher.max_queue, "sentences waiting to be decoded; beyond: 503")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--request-timeout-ms", o.request_timeout_ms, "a request not answered by then gets 503")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--char-limit", o.limits.char_limit, "characters per request; beyond: 413 (0: no limit)")->capture_default_str();
  cmd->add_option("--batch-limit", o.limits.batch_limit, "texts per request; beyond: 413 (0: no limit)")->capture_default_str();
  cmd->add_option("--max-body-bytes", o.max_body_bytes, "request body size; beyond: 413")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--http-threads", o.http_threads, "connections served at once (a keep-alive client holds one while connected)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--read-timeout", o.read_timeout_s, "seconds a silent client keeps its connection")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  static bool no_access_log = false;
  cmd->add_flag("--no-access-log", no_access_log, "no log line per request");
  cmd->callback([&common] {
    apply_common(common);
    o.batcher.batching = !no_batching;
    o.batcher.continuous = !static_batching;
    o.access_log = !no_access_log;
    serve::run_server(o);
  });
}

}  // namespace thor::cli
