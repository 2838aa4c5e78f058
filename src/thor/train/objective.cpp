// See objective.h.
#include "thor/train/objective.h"

#include "thor/train/loss.h"

namespace thor {

ObjectiveResult compute_objective(Transformer& model, const Batch& b, const ObjectiveOptions& o) {
  const int64_t pad = model->config().pad_id;
  ObjectiveResult r;
  if (o.two_pass) {
    // Both passes in one forward: rows [0, B) and [B, 2B) draw their experts apart, and
    // every non-expert layer runs one product over twice the rows.
    model->set_groups(2);
    torch::Tensor logits;
    try {
      logits = model->forward(torch::cat({b.src, b.src}), torch::cat({b.tgt_in, b.tgt_in}));
    } catch (...) {
      model->set_groups(1);
      throw;
    }
    model->set_groups(1);
    auto V = logits.size(-1);
    auto lprobs = torch::log_softmax(logits.to(torch::kFloat), -1).view({2, -1, V});  // [2, B*T, V]
    auto target = b.tgt_out.reshape({-1});
    auto ce1 = label_smoothed_nll_lprobs(lprobs[0], target, o.label_smoothing, pad);
    auto ce2 = label_smoothed_nll_lprobs(lprobs[1], target, o.label_smoothing, pad);
    auto cons = consistency_loss(lprobs[0], lprobs[1], target.ne(pad));
    r.loss = ce1.loss + ce2.loss + o.consistency_alpha * cons;
    r.ce = 0.5 * (ce1.loss.item<double>() + ce2.loss.item<double>());
    r.nll = 0.5 * (ce1.nll.item<double>() + ce2.nll.item<double>());
    r.consistency = cons.item<double>();
  } else {
    auto res = label_smoothed_nll(model->forward(b.src, b.tgt_in), b.tgt_out, o.label_smoothing, pad);
    r.loss = res.loss;
    r.ce = res.loss.item<double>();
    r.nll = res.nll.item<double>();
  }
  // Router auxiliary losses are per-batch means: weighting them by the batch's tokens lets
  // the update's normalisation by its token count leave their coefficients intact.
  for (auto& layer : model->expert_layers())
    for (auto& kv : layer->last.aux) r.loss = r.loss + kv.second * static_cast<double>(b.ntokens);
  return r;
}

}  // namespace thor
