// See decoding_model.h.
#include "thor/train/decoding_model.h"

#include "thor/common/error.h"
#include "thor/common/runtime.h"
#include "thor/ops/gemm.h"

namespace thor {

DecodingModel load_for_decoding(const DecodingSettings& s) {
  DecodingModel m;
  m.device = runtime::parse_device(s.device);
  use_precision(s.precision, m.device, /*training=*/false);
  int64_t fixed = 0;
  const auto select = parse_expert_select(s.expert_select, &fixed);
  torch::manual_seed(s.seed);
  m.lm = load_model(s.model_path, m.device);
  if (select == ExpertSelect::Fixed && fixed >= m.lm.config.num_experts && m.lm.config.num_experts > 1)
    throw Error("--expert-select fixed:" + std::to_string(fixed) + ": the model has " +
                std::to_string(m.lm.config.num_experts) + " experts");
  m.lm.model->set_expert_select(select, fixed);
  if (!s.shortlist_path.empty()) m.shortlist = std::make_unique<Shortlist>(Shortlist::load(s.shortlist_path));
  m.decode = s.decode;
  m.decode.shortlist = m.shortlist.get();
  m.decode.seed = s.seed;
  return m;
}

}  // namespace thor
