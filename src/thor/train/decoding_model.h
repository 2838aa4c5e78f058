// A checkpoint loaded for decoding, the one way `thor translate` and `thor serve` do it:
// products' precision set, the stochastic-expert selection checked against the model, the
// optional vocabulary shortlist loaded, the decoding options filled in.
#pragma once
#include <memory>
#include <string>

#include "thor/decode/shortlist.h"
#include "thor/decode/translator.h"
#include "thor/train/checkpoint.h"

namespace thor {

struct DecodingSettings {
  std::string model_path;
  std::string device = "auto";
  std::string precision = "float32";  // float32 | bf16 | int8 | auto
  std::string expert_select = "sentence";
  uint64_t seed = 1;
  std::string shortlist_path;  // empty: none
  TranslateOptions decode;     // search, batch size, workers (shortlist and seed set here)
};

struct DecodingModel {
  LoadedModel lm;
  std::unique_ptr<Shortlist> shortlist;
  torch::Device device = torch::kCPU;
  TranslateOptions decode;  // with the shortlist and seed of the settings
};

// Throws thor::Error naming the option or file at fault.
DecodingModel load_for_decoding(const DecodingSettings& s);

}  // namespace thor
