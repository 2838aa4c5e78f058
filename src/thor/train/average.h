// Checkpoint averaging (fairseq's scripts/average_checkpoints.py): the element-wise mean of
// the parameters and floating buffers of N checkpoints of one model (sums in float64;
// integer buffers: the floor of the mean, as fairseq's //=). The result is a model-only
// checkpoint (no optimizer state) with the first input's config and vocabulary.
#pragma once
#include <string>
#include <vector>

namespace thor {

// Throws Error naming the file when an input is unreadable or of another architecture or
// vocabulary than the first.
void average_checkpoints(const std::vector<std::string>& inputs, const std::string& out_path);

// The last `n` checkpoint_N.pt of a save dir by update number (fairseq's
// --num-update-checkpoints), oldest first; Error when it holds fewer.
std::vector<std::string> last_numbered_checkpoints(const std::string& save_dir, int n);

}  // namespace thor
