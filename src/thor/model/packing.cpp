// See packing.h.
#include "thor/model/packing.h"

namespace thor {

Packing Packing::of(const torch::Tensor& pad_mask) {
  TORCH_CHECK(pad_mask.dim() == 2, "Packing: expected a [B, S] padding mask");
  Packing p;
  p.batch = pad_mask.size(0), p.len = pad_mask.size(1);
  p.index = pad_mask.logical_not().reshape({-1}).nonzero().view({-1});
  return p;
}

torch::Tensor Packing::pack(const torch::Tensor& x) const {
  auto sizes = x.sizes().vec();
  TORCH_CHECK(sizes.size() >= 2 && sizes[0] == batch && sizes[1] == len, "Packing::pack: expected [B, S, ...]");
  sizes.erase(sizes.begin());
  sizes[0] = batch * len;
  return x.reshape(sizes).index_select(0, index);
}

torch::Tensor Packing::unpack(const torch::Tensor& xp) const {
  TORCH_CHECK(xp.size(0) == tokens(), "Packing::unpack: ", xp.size(0), " rows for ", tokens(), " tokens");
  auto sizes = xp.sizes().vec();
  sizes[0] = batch * len;
  auto out = torch::zeros(sizes, xp.options()).index_copy_(0, index, xp);
  sizes.insert(sizes.begin(), batch);
  sizes[1] = len;
  return out.view(sizes);
}

torch::Tensor Packing::rows() const { return index.div(len, "floor"); }

}  // namespace thor
