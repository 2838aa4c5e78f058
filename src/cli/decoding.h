// The decoding options `translate` and `serve` share (one declaration, the same defaults).
#pragma once
#include <CLI/CLI.hpp>

#include "thor/train/decoding_model.h"

namespace thor::cli {

// --model, --beam, --lenpen, --max-len-a/-b, --device, --expert-select, --seed, --shortlist,
// --precision, --workers; `s` holds the values.
void add_decoding_options(CLI::App* cmd, DecodingSettings& s);

}  // namespace thor::cli
