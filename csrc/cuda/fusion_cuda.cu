// CUDA kernels of evss::fused_merge_argmax and evss::upsample_argmax (see csrc/fusion.h): one
// thread per output pixel, looping over the classes; float32/float64 computed in their own
// precision, float16/bfloat16 read as such and computed in float32.  Same arithmetic order as the
// CPU kernels.  No host synchronisation: the launch is asynchronous on the current stream.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>

#include "fusion.h"

namespace evss {
namespace {

// Uncontracted multiply and add (nvcc fuses a*b + c into an FMA by default; the CPU kernels and
// PyTorch's unfused path round the product first).
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

// Where output pixel i (flat index over B×oh×ow) reads the ×4-upsampled maps: batch, the four
// corners on the h×w grid and their bilinear weights.
template <typename T>
struct Up4Tap {
  int64_t b, i00, i01, i10, i11;
  T ly0, ly1, lx0, lx1;
};

template <typename T>
__device__ __forceinline__ Up4Tap<T> up4_tap(int64_t i, int64_t h, int64_t w, int64_t oh, int64_t ow) {
  Up4Tap<T> t;
  int64_t y0, y1, x0, x1;
  up4_index<T>((i / ow) % oh, h, y0, y1, t.ly0, t.ly1);
  up4_index<T>(i % ow, w, x0, x1, t.lx0, t.lx1);
  t.b = i / (ow * oh);
  t.i00 = y0 * w + x0;
  t.i01 = y0 * w + x1;
  t.i10 = y1 * w + x0;
  t.i11 = y1 * w + x1;
  return t;
}

template <typename scalar_t, typename T>
__device__ __forceinline__ T bilinear(const scalar_t* __restrict__ p, const Up4Tap<T>& t) {
  const T t0 = add_rn(mul_rn(static_cast<T>(p[t.i00]), t.lx0), mul_rn(static_cast<T>(p[t.i01]), t.lx1));
  const T t1 = add_rn(mul_rn(static_cast<T>(p[t.i10]), t.lx0), mul_rn(static_cast<T>(p[t.i11]), t.lx1));
  return add_rn(mul_rn(t0, t.ly0), mul_rn(t1, t.ly1));
}

template <typename scalar_t>
__global__ void fused_merge_argmax_kernel(const scalar_t* __restrict__ W, const scalar_t* __restrict__ U,
                                          const scalar_t* __restrict__ E, const scalar_t* __restrict__ D,
                                          int64_t B, int64_t C, int64_t h, int64_t w, double wf,
                                          int64_t oh, int64_t ow, int64_t* __restrict__ out) {
  using T = at::opmath_type<scalar_t>;
  const int64_t total = B * oh * ow;
  const int64_t plane = h * w;
  const T a = static_cast<T>(1.0 - wf);
  const T bwf = static_cast<T>(wf);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const Up4Tap<T> tap = up4_tap<T>(i, h, w, oh, ow);
    const int64_t b = tap.b;
    const scalar_t* Eb = E + b * 2 * plane;
    const T e0 = bilinear<scalar_t, T>(Eb, tap);
    const T e1 = bilinear<scalar_t, T>(Eb + plane, tap);
    const T dc = bilinear<scalar_t, T>(D + b * plane, tap);
    const T mx = e0 > e1 ? e0 : e1;
    const T z0 = exp(e0 - mx);
    const T z1 = exp(e1 - mx);
    const T p = z1 / (z0 + z1);
    const T dm = add_rn(mul_rn(a, p), mul_rn(bwf, dc));
    const T om = static_cast<T>(1) - dm;
    const scalar_t* Wb = W + b * C * plane;
    const scalar_t* Ub = U + b * C * plane;
    T best = 0;
    int64_t arg = 0;
    for (int64_t c = 0; c < C; ++c) {
      const T wu = bilinear<scalar_t, T>(Wb + c * plane, tap);
      const T uu = bilinear<scalar_t, T>(Ub + c * plane, tap);
      const T m = add_rn(mul_rn(wu, om), mul_rn(uu, dm));
      if (c == 0 || m > best || (m != m && best == best)) {
        best = m;
        arg = c;
      }
    }
    out[i] = arg;
  }
}

template <typename scalar_t>
__global__ void upsample_argmax_kernel(const scalar_t* __restrict__ L, int64_t B, int64_t C, int64_t h,
                                       int64_t w, int64_t oh, int64_t ow, int64_t* __restrict__ out) {
  using T = at::opmath_type<scalar_t>;
  const int64_t total = B * oh * ow;
  const int64_t plane = h * w;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const Up4Tap<T> tap = up4_tap<T>(i, h, w, oh, ow);
    const int64_t b = tap.b;
    const scalar_t* Lb = L + b * C * plane;
    T best = 0;
    int64_t arg = 0;
    for (int64_t c = 0; c < C; ++c) {
      const T m = bilinear<scalar_t, T>(Lb + c * plane, tap);
      if (c == 0 || m > best || (m != m && best == best)) {
        best = m;
        arg = c;
      }
    }
    out[i] = arg;
  }
}

inline int blocks_for(int64_t n, int threads) {
  const int64_t want = (n + threads - 1) / threads;
  return static_cast<int>(want < 65535 * 8 ? (want > 0 ? want : 1) : 65535 * 8);
}

at::Tensor fused_merge_argmax_cuda(const at::Tensor& warped_q, const at::Tensor& update_q,
                                   const at::Tensor& edge_q, const at::Tensor& dm_coarse_q, double wf,
                                   int64_t out_h, int64_t out_w) {
  check_fused_merge_args(warped_q, update_q, edge_q, dm_coarse_q, out_h, out_w);
  const c10::cuda::CUDAGuard guard(warped_q.device());
  const auto W = warped_q.contiguous(), U = update_q.contiguous(), E = edge_q.contiguous(),
             D = dm_coarse_q.contiguous();
  const int64_t B = W.size(0), C = W.size(1), h = W.size(2), w = W.size(3);
  auto out = at::empty({B, out_h, out_w}, W.options().dtype(at::kLong));
  if (out.numel() == 0) return out;
  constexpr int threads = 256;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, W.scalar_type(), "fused_merge_argmax_cuda", [&] {
    fused_merge_argmax_kernel<scalar_t><<<blocks_for(out.numel(), threads), threads, 0, stream>>>(
        W.data_ptr<scalar_t>(), U.data_ptr<scalar_t>(), E.data_ptr<scalar_t>(), D.data_ptr<scalar_t>(), B,
        C, h, w, wf, out_h, out_w, out.data_ptr<int64_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor upsample_argmax_cuda(const at::Tensor& logits_q, int64_t out_h, int64_t out_w) {
  check_upsample_argmax_args(logits_q, out_h, out_w);
  const c10::cuda::CUDAGuard guard(logits_q.device());
  const auto L = logits_q.contiguous();
  const int64_t B = L.size(0), C = L.size(1), h = L.size(2), w = L.size(3);
  auto out = at::empty({B, out_h, out_w}, L.options().dtype(at::kLong));
  if (out.numel() == 0) return out;
  constexpr int threads = 256;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, L.scalar_type(), "upsample_argmax_cuda", [&] {
    upsample_argmax_kernel<scalar_t><<<blocks_for(out.numel(), threads), threads, 0, stream>>>(
        L.data_ptr<scalar_t>(), B, C, h, w, out_h, out_w, out.data_ptr<int64_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace evss

TORCH_LIBRARY_IMPL(evss, CUDA, m) {
  m.impl("fused_merge_argmax", &evss::fused_merge_argmax_cuda);
  m.impl("upsample_argmax", &evss::upsample_argmax_cuda);
}
