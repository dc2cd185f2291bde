// The fused merge of EVSS's rectification step, prediction only (evss::fused_merge_argmax and
// evss::upsample_argmax).  Shared by csrc/cpu/fusion_cpu.cpp and csrc/cuda/fusion_cuda.cu.
//
// Full-resolution grid: 4h x 4w (bilinear x4, align_corners=False, as F.interpolate(scale_factor=4)),
// cropped to out_h x out_w (out_h <= 4h, out_w <= 4w).  Per output pixel (y, x):
//   p      = softmax(edge_up)[1]                  (2 channels)
//   dm     = (1 - wf) * p + wf * dm_coarse_up
//   merged = warped_up * (1 - dm) + update_up * dm (per class)
//   out    = first index of the largest merged value (torch.argmax; NaN counts as the largest)
// without materialising any full-resolution map.  upsample_argmax is argmax_c(logits_up).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace evss {

// Source row/column of output index `o` for an exact x4 bilinear upsampling (align_corners=False):
// src = 0.25 * (o + 0.5) - 0.5, clamped at 0; i0 = floor(src) (<= n-1), i1 = i0 + 1 clamped to n-1;
// weights l0 = 1 - l1, l1 = src - i0.  Every value is a multiple of 1/8, so float arithmetic is exact.
template <typename T>
#ifdef __CUDACC__
__host__ __device__
#endif
inline void up4_index(int64_t o, int64_t n, int64_t& i0, int64_t& i1, T& l0, T& l1) {
  T src = static_cast<T>(0.25) * (static_cast<T>(o) + static_cast<T>(0.5)) - static_cast<T>(0.5);
  if (src < 0) src = 0;
  int64_t i = static_cast<int64_t>(src);
  if (i > n - 1) i = n - 1;
  T lam = src - static_cast<T>(i);
  if (lam < 0) lam = 0;
  if (lam > 1) lam = 1;
  i0 = i;
  i1 = i + ((i < n - 1) ? 1 : 0);
  l1 = lam;
  l0 = static_cast<T>(1) - lam;
}

inline void check_fused_merge_args(const at::Tensor& warped, const at::Tensor& update,
                                   const at::Tensor& edge, const at::Tensor& dm_coarse,
                                   int64_t out_h, int64_t out_w) {
  const char* op = "evss::fused_merge_argmax";
  TORCH_CHECK(warped.dim() == 4, op, ": warped_q must be 4-D (B, C, h, w), got ", warped.sizes());
  TORCH_CHECK(update.sizes() == warped.sizes(), op, ": update_q must have warped_q's shape ",
              warped.sizes(), ", got ", update.sizes());
  const auto B = warped.size(0), h = warped.size(2), w = warped.size(3);
  TORCH_CHECK(edge.dim() == 4 && edge.size(0) == B && edge.size(1) == 2 && edge.size(2) == h &&
                  edge.size(3) == w,
              op, ": edge_q must be (B, 2, h, w) = (", B, ", 2, ", h, ", ", w, "), got ", edge.sizes());
  TORCH_CHECK(dm_coarse.dim() == 4 && dm_coarse.size(0) == B && dm_coarse.size(1) == 1 &&
                  dm_coarse.size(2) == h && dm_coarse.size(3) == w,
              op, ": dm_coarse_q must be (B, 1, h, w) = (", B, ", 1, ", h, ", ", w, "), got ",
              dm_coarse.sizes());
  for (const at::Tensor* t : {&update, &edge, &dm_coarse}) {
    TORCH_CHECK(t->device() == warped.device(), op, ": all inputs must be on one device, got ",
                warped.device(), " and ", t->device());
    TORCH_CHECK(t->scalar_type() == warped.scalar_type(), op,
                ": all inputs must have one floating dtype, got ", warped.scalar_type(), " and ",
                t->scalar_type());
  }
  TORCH_CHECK(at::isFloatingType(warped.scalar_type()), op, ": floating inputs expected, got ",
              warped.scalar_type());
  TORCH_CHECK(out_h >= 0 && out_w >= 0 && out_h <= 4 * h && out_w <= 4 * w, op,
              ": out_h, out_w must lie in [0, 4h] x [0, 4w] = [0, ", 4 * h, "] x [0, ", 4 * w,
              "], got ", out_h, " x ", out_w);
  TORCH_CHECK(warped.size(1) > 0 || out_h * out_w * B == 0, op, ": at least one class needed");
}

inline void check_upsample_argmax_args(const at::Tensor& logits, int64_t out_h, int64_t out_w) {
  const char* op = "evss::upsample_argmax";
  TORCH_CHECK(logits.dim() == 4, op, ": logits_q must be 4-D (B, C, h, w), got ", logits.sizes());
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()), op, ": floating input expected, got ",
              logits.scalar_type());
  const auto h = logits.size(2), w = logits.size(3);
  TORCH_CHECK(out_h >= 0 && out_w >= 0 && out_h <= 4 * h && out_w <= 4 * w, op,
              ": out_h, out_w must lie in [0, 4h] x [0, 4w] = [0, ", 4 * h, "] x [0, ", 4 * w,
              "], got ", out_h, " x ", out_w);
  TORCH_CHECK(logits.size(1) > 0 || out_h * out_w * logits.size(0) == 0, op,
              ": at least one class needed");
}

}  // namespace evss
