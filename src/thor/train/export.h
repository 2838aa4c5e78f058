// Dense export of a stochastic-expert checkpoint (THOR paper, Sec. 3.3 inference options):
// every expert bank becomes a single expert, either expert K or the average of all
// experts ("merge"). The result is an ordinary dense checkpoint whose output equals
// `translate --expert-select fixed:K` (or merge) exactly.
#pragma once
#include <string>

#include "thor/model/transformer.h"

namespace thor {

// expert: "merge" or a non-negative integer K. Throws thor::Error on bad input.
Transformer make_dense(Transformer& model, const std::string& expert);

void export_dense(const std::string& model_path, const std::string& expert, const std::string& out_path);

}  // namespace thor
