// safetensors, the format Hugging Face, CTranslate2's and Marian's converters pass weights
// in (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length N, N
// bytes of JSON {NAME: {"dtype": "F32", "shape": [...], "data_offsets": [BEGIN, END]}, ...,
// "__metadata__": {string: string}} (padded with spaces to a multiple of 8), then the
// tensors' bytes, little-endian and row-major, offsets counted from the end of the header.
// The reader checks what the reference implementation checks: a header within the file and
// at most 100 MB, JSON with no duplicate names, known dtypes, each tensor's byte length equal
// to its shape times its dtype's size, tensors neither overlapping nor leaving gaps, and the
// data ending where the file ends.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace thor {

struct Safetensors {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;  // in file order
  std::map<std::string, std::string> metadata;
};

// Written durably (common/file_io.h), tensors in the order given. Throws Error on a dtype
// the format has no name for.
void write_safetensors(const std::string& path, const Safetensors& st);

// Throws Error naming the file and what is wrong with it.
Safetensors read_safetensors(const std::string& path);

}  // namespace thor
