// Shared pieces of the resample2d kernels (CPU: csrc/cpu/resample2d_cpu.cpp, CUDA:
// csrc/cuda/resample2d_cuda.cu).  The argument checks are defined in csrc/ops.cpp.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/MemoryFormat.h>
#include <c10/macros/Macros.h>

#include <cstdint>

namespace evss {

// Index of a bilinear corner along an axis of length n.  `f` is floor(xf) or floor(xf) + 1
// (integer valued, +-inf or NaN).  The original converts with CUDA's int() (truncation, saturation
// at +-2^31, NaN -> 0) and then clamps to [0, n - 1]; together: NaN and everything <= 0 -> 0,
// everything >= n - 1 -> n - 1.  (The int64 conversion is exact for |f| < 2^63; larger values,
// and +inf, take the first branch below.)
template <typename T>
C10_HOST_DEVICE inline int64_t resample2d_clamp_index(T f, int64_t n) {
  if (!(f > T(0))) return 0;  // also NaN and -inf
  if (f >= T(9.0e18)) return n - 1;
  const int64_t i = static_cast<int64_t>(f);
  return i < n - 1 ? i : n - 1;
}

// T(int(f)) with CUDA semantics: truncation towards zero, saturation at the int32 range, NaN -> 0.
// Used by grad_input's truncation-based fractions a' = xf - int(xf).  For float, T(INT32_MAX)
// rounds to 2^31, as the original's implicit int -> float conversion does.
template <typename T>
C10_HOST_DEVICE inline T resample2d_int_as(T f) {
  int32_t i;
  if (f != f) {
    i = 0;
  } else if (f >= static_cast<T>(2147483647)) {
    i = 2147483647;
  } else if (f <= static_cast<T>(-2147483647 - 1)) {
    i = -2147483647 - 1;
  } else {
    i = static_cast<int32_t>(f);
  }
  return static_cast<T>(i);
}

// Argument checks shared by all backends (shapes, batch, device, dtype equality); the dtype
// support of each backend is checked by its kernel file.  Defined in csrc/ops.cpp.
void check_resample2d_args(const char* op, const at::Tensor& input, const at::Tensor& flow);
void check_resample2d_grad_output(const char* op, const at::Tensor& grad_output,
                                  const at::Tensor& input, const at::Tensor& flow);

// Memory format of a result that mirrors `t`: channels_last when `t` is channels_last (and not
// also plain contiguous), contiguous otherwise.  model/warp.py's fake kernels use the same rule.
at::MemoryFormat resample2d_layout(const at::Tensor& t);

}  // namespace evss
