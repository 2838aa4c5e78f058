// `thor report`: a run (or several, overlaid) as pictures, from the JSON lines every save
// dir's train_log.jsonl holds: training loss and validation loss / BLEU against updates,
// wall-clock (as logged, and at the run's median seconds per update, which leaves out pauses) and
// training FLOPs, learning rate, tokens/s, gradient norm; for expert models the token share of
// every expert in every layer over time (a heatmap per layer) and the consistency and
// routers' auxiliary losses. One self-contained HTML page (inline SVG, the log's numbers
// embedded as JSON, no external requests), or one SVG file per chart.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace thor::report {

struct RunLog {
  std::string name, dir;
  std::vector<nlohmann::json> train, valid;  // log lines with "loss" / with "valid_loss", in order
  // the pace of the wall-clock chart that leaves out pauses: 0 = the median of the log's
  // seconds per update; else one measured apart (on an idle machine)
  double seconds_per_update = 0;
};

// --seconds-per-update RUN=S: sets that run's pace; an Error names the option when RUN is
// no run's name or S is not a positive number.
void set_pace(std::vector<RunLog>& runs, const std::string& spec);

// SAVE_DIR/train_log.jsonl; a line that is not JSON is an Error naming file:line.
RunLog read_run(const std::string& save_dir);

// format "html": `out` is the page; "svg": `out` is a directory, one file per chart.
// Returns the number of charts written.
size_t write_report(const std::vector<RunLog>& runs, const std::string& format, const std::string& out);

}  // namespace thor::report
