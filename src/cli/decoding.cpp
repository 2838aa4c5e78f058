// See decoding.h.
#include "cli/decoding.h"

namespace thor::cli {

void add_decoding_options(CLI::App* cmd, DecodingSettings& s) {
  s.decode.search.max_len_a = 1.2;
  s.decode.search.max_len_b = 10;
  cmd->add_option("--model,-m", s.model_path, "checkpoint (.pt)")->required();
  cmd->add_option("--beam", s.decode.search.beam, "beam size (1 = greedy)")->capture_default_str();
  cmd->add_option("--lenpen", s.decode.search.lenpen, "length penalty exponent")->capture_default_str();
  cmd->add_option("--max-len-a", s.decode.search.max_len_a, "max output length = a * source length + b")->capture_default_str();
  cmd->add_option("--max-len-b", s.decode.search.max_len_b)->capture_default_str();
  cmd->add_option("--device", s.device, "auto, cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--expert-select", s.expert_select,
                  "stochastic experts: sentence (one draw per sentence, kept through decoding), token, "
                  "fixed:K, ensemble (average all experts), merge (average expert weights)")
      ->capture_default_str();
  cmd->add_option("--seed", s.seed, "seed for random expert draws")->capture_default_str();
  cmd->add_option("--shortlist", s.shortlist_path,
                  "vocabulary shortlist (thor shortlist): score only the source tokens' candidates");
  cmd->add_option("--precision", s.precision,
                  "float32 | bf16 | int8 | auto: type of the linear layers' products (int8: weights per output "
                  "channel, activations per row, int32 accumulation; CPU; auto: bf16 where the CPU has native "
                  "bf16 products, float32 elsewhere)")
      ->capture_default_str();
  cmd->add_option("--workers", s.decode.workers,
                  "batches decoded in parallel, each with threads/workers intra-op threads (0 = auto: one per "
                  "thread on the CPU)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
}

}  // namespace thor::cli
