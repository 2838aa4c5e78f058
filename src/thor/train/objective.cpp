// See objective.h.
#include "thor/train/objective.h"

#include "thor/train/loss.h"

namespace thor {

ObjectiveResult compute_objective(Transformer& model, const Batch& b, const ObjectiveOptions& o,
                                  const std::vector<std::vector<int64_t>>& pinned) {
  const int64_t pad = model->config().pad_id;
  ObjectiveResult r;
  const int64_t groups = o.two_pass ? 2 : 1;
  // Both THOR passes in one forward: rows [0, B) and [B, 2B) draw their experts apart, and
  // every non-expert layer runs one product over twice the rows.
  RoutingContext ctx = model->routing();
  ctx.groups = groups;
  if (!pinned.empty()) ctx.pinned = pinned;
  ctx.stats = &r.experts;
  auto logits = o.two_pass ? model->forward(torch::cat({b.src, b.src}), torch::cat({b.tgt_in, b.tgt_in}), ctx)
                           : model->forward(b.src, b.tgt_in, ctx);
  auto res = fused_translation_loss(logits.reshape({-1, logits.size(-1)}), b.tgt_out, groups, o.label_smoothing,
                                    o.consistency_alpha, pad, o.consistency_on);
  r.loss = res.loss;
  r.ce = res.ce;
  r.nll = res.nll;
  r.consistency = res.consistency;
  // Router auxiliary losses are per-batch means: weighting them by the batch's tokens lets
  // the update's normalisation by its token count leave their coefficients intact.
  for (auto& layer : r.experts)
    for (auto& kv : layer.aux) r.loss = r.loss + kv.second * static_cast<double>(b.ntokens);
  return r;
}

}  // namespace thor
