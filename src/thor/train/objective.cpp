// See objective.h.
#include "thor/train/objective.h"

#include "thor/train/loss.h"

namespace thor {

ObjectiveResult compute_objective(Transformer& model, const Batch& b, const ObjectiveOptions& o) {
  const int64_t pad = model->config().pad_id;
  ObjectiveResult r;
  const int64_t groups = o.two_pass ? 2 : 1;
  torch::Tensor logits;
  if (o.two_pass) {
    // Both passes in one forward: rows [0, B) and [B, 2B) draw their experts apart, and
    // every non-expert layer runs one product over twice the rows.
    model->set_groups(2);
    try {
      logits = model->forward(torch::cat({b.src, b.src}), torch::cat({b.tgt_in, b.tgt_in}));
    } catch (...) {
      model->set_groups(1);
      throw;
    }
    model->set_groups(1);
  } else {
    logits = model->forward(b.src, b.tgt_in);
  }
  auto res = fused_translation_loss(logits.reshape({-1, logits.size(-1)}), b.tgt_out, groups, o.label_smoothing,
                                    o.consistency_alpha, pad);
  r.loss = res.loss;
  r.ce = res.ce;
  r.nll = res.nll;
  r.consistency = res.consistency;
  // Router auxiliary losses are per-batch means: weighting them by the batch's tokens lets
  // the update's normalisation by its token count leave their coefficients intact.
  for (auto& layer : model->expert_layers())
    for (auto& kv : layer->last.aux) r.loss = r.loss + kv.second * static_cast<double>(b.ntokens);
  return r;
}

}  // namespace thor
