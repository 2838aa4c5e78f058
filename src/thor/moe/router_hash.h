// `hash` router (Hash Layers, Roller et al. 2021): each token id goes to a fixed expert
// given by a seeded random permutation of the vocabulary, so every expert owns the same
// number of token types (+-1). No parameters; the table is a buffer saved with the model.
#pragma once
#include "thor/moe/router.h"

namespace thor {

class HashRouterImpl : public RouterImpl {
 public:
  explicit HashRouterImpl(const ModelConfig& c);
  Routing route(const RouterInput& in) override;
  torch::Tensor table;  // [V] expert per token id
};

}  // namespace thor
