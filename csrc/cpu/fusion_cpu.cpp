// CPU kernels of evss::fused_merge_argmax and evss::upsample_argmax (see csrc/fusion.h).
//
// One output row at a time (rows of all images are split among threads with at::parallel_for):
// the row's distortion map dm and 1 - dm are computed once into small buffers, then each class's
// merged value is formed for the whole row and compared with the running maximum, so the inner
// loops run over contiguous output columns and vectorise; nothing of full-resolution size is ever
// allocated besides the int64 prediction.  The arithmetic follows the unfused path's order
// (bilinear: horizontal then vertical; softmax; (1-wf)*p + wf*d; w*(1-dm) + u*dm) in the input's
// precision, so results agree with fuse(...).logits.argmax(1) up to float rounding (exactly the
// same where the top-2 margin exceeds a few ulps).  float16/bfloat16 inputs are computed in float32.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "fusion.h"

namespace evss {
namespace {

template <typename T>
struct Axis {
  std::vector<int32_t> i0, i1;
  std::vector<T> l0, l1;
  Axis(int64_t out, int64_t n) : i0(out), i1(out), l0(out), l1(out) {
    for (int64_t o = 0; o < out; ++o) {
      int64_t a, b;
      up4_index<T>(o, n, a, b, l0[o], l1[o]);
      i0[o] = static_cast<int32_t>(a);
      i1[o] = static_cast<int32_t>(b);
    }
  }
};

// out[x] = (r0[x0]*lx0 + r0[x1]*lx1)*ly0 + (r1[x0]*lx0 + r1[x1]*lx1)*ly1 for a whole output row.
template <typename T>
inline void interp_row(const T* __restrict r0, const T* __restrict r1, T ly0, T ly1,
                       const Axis<T>& ax, int64_t ow, T* __restrict out) {
  const int32_t* __restrict x0 = ax.i0.data();
  const int32_t* __restrict x1 = ax.i1.data();
  const T* __restrict lx0 = ax.l0.data();
  const T* __restrict lx1 = ax.l1.data();
  for (int64_t x = 0; x < ow; ++x) {
    const T t0 = r0[x0[x]] * lx0[x] + r0[x1[x]] * lx1[x];
    const T t1 = r1[x0[x]] * lx0[x] + r1[x1[x]] * lx1[x];
    out[x] = t0 * ly0 + t1 * ly1;
  }
}

// Running argmax over classes: take the new value when it is larger, or NaN over a non-NaN.
template <typename T>
inline void argmax_update(const T* __restrict m, int32_t c, int64_t ow, T* __restrict best,
                          int32_t* __restrict arg) {
  for (int64_t x = 0; x < ow; ++x) {
    const T v = m[x];
    const T b = best[x];
    const bool take = (v > b) || (v != v && b == b);
    best[x] = take ? v : b;
    arg[x] = take ? c : arg[x];
  }
}

template <typename T>
void fused_merge_argmax_kernel(const T* W, const T* U, const T* E, const T* D, int64_t B, int64_t C,
                               int64_t h, int64_t w, double wf, int64_t oh, int64_t ow, int64_t* out) {
  const Axis<T> ax(ow, w);
  const Axis<T> ay(oh, h);
  const int64_t plane = h * w;
  const T a = static_cast<T>(1.0 - wf);
  const T bwf = static_cast<T>(wf);
  at::parallel_for(0, B * oh, 8, [&](int64_t begin, int64_t end) {
    std::vector<T> e0(ow), e1(ow), dm(ow), om(ow), wu(ow), uu(ow), best(ow);
    std::vector<int32_t> arg(ow);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / oh, y = r % oh;
      const int64_t y0 = ay.i0[y], y1 = ay.i1[y];
      const T ly0 = ay.l0[y], ly1 = ay.l1[y];
      const T* Eb = E + b * 2 * plane;
      const T* Db = D + b * plane;
      interp_row<T>(Eb + y0 * w, Eb + y1 * w, ly0, ly1, ax, ow, e0.data());
      interp_row<T>(Eb + plane + y0 * w, Eb + plane + y1 * w, ly0, ly1, ax, ow, e1.data());
      interp_row<T>(Db + y0 * w, Db + y1 * w, ly0, ly1, ax, ow, dm.data());
      for (int64_t x = 0; x < ow; ++x) {
        const T mx = e0[x] > e1[x] ? e0[x] : e1[x];
        const T z0 = std::exp(e0[x] - mx);
        const T z1 = std::exp(e1[x] - mx);
        const T p = z1 / (z0 + z1);
        const T d = a * p + bwf * dm[x];
        dm[x] = d;
        om[x] = static_cast<T>(1) - d;
      }
      const T* Wb = W + b * C * plane;
      const T* Ub = U + b * C * plane;
      for (int64_t c = 0; c < C; ++c) {
        const T* Wc = Wb + c * plane;
        const T* Uc = Ub + c * plane;
        interp_row<T>(Wc + y0 * w, Wc + y1 * w, ly0, ly1, ax, ow, wu.data());
        interp_row<T>(Uc + y0 * w, Uc + y1 * w, ly0, ly1, ax, ow, uu.data());
        T* m = wu.data();
        const T* __restrict uup = uu.data();
        const T* __restrict omp = om.data();
        const T* __restrict dmp = dm.data();
        for (int64_t x = 0; x < ow; ++x) m[x] = m[x] * omp[x] + uup[x] * dmp[x];
        if (c == 0) {
          std::copy(m, m + ow, best.begin());
          std::fill(arg.begin(), arg.end(), 0);
        } else {
          argmax_update<T>(m, static_cast<int32_t>(c), ow, best.data(), arg.data());
        }
      }
      int64_t* o = out + r * ow;
      for (int64_t x = 0; x < ow; ++x) o[x] = arg[x];
    }
  });
}

template <typename T>
void upsample_argmax_kernel(const T* L, int64_t B, int64_t C, int64_t h, int64_t w, int64_t oh,
                            int64_t ow, int64_t* out) {
  const Axis<T> ax(ow, w);
  const Axis<T> ay(oh, h);
  const int64_t plane = h * w;
  at::parallel_for(0, B * oh, 8, [&](int64_t begin, int64_t end) {
    std::vector<T> m(ow), best(ow);
    std::vector<int32_t> arg(ow);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / oh, y = r % oh;
      const int64_t y0 = ay.i0[y], y1 = ay.i1[y];
      const T ly0 = ay.l0[y], ly1 = ay.l1[y];
      const T* Lb = L + b * C * plane;
      for (int64_t c = 0; c < C; ++c) {
        const T* Lc = Lb + c * plane;
        interp_row<T>(Lc + y0 * w, Lc + y1 * w, ly0, ly1, ax, ow, c == 0 ? best.data() : m.data());
        if (c == 0) {
          std::fill(arg.begin(), arg.end(), 0);
        } else {
          argmax_update<T>(m.data(), static_cast<int32_t>(c), ow, best.data(), arg.data());
        }
      }
      int64_t* o = out + r * ow;
      for (int64_t x = 0; x < ow; ++x) o[x] = arg[x];
    }
  });
}

at::Tensor as_compute(const at::Tensor& t) {
  const auto st = t.scalar_type();
  if (st == at::kHalf || st == at::kBFloat16) return t.to(at::kFloat).contiguous();
  return t.contiguous();
}

at::Tensor fused_merge_argmax_cpu(const at::Tensor& warped_q, const at::Tensor& update_q,
                                  const at::Tensor& edge_q, const at::Tensor& dm_coarse_q, double wf,
                                  int64_t out_h, int64_t out_w) {
  check_fused_merge_args(warped_q, update_q, edge_q, dm_coarse_q, out_h, out_w);
  const auto W = as_compute(warped_q), U = as_compute(update_q), E = as_compute(edge_q),
             D = as_compute(dm_coarse_q);
  const int64_t B = W.size(0), C = W.size(1), h = W.size(2), w = W.size(3);
  auto out = at::empty({B, out_h, out_w}, warped_q.options().dtype(at::kLong));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(W.scalar_type(), "fused_merge_argmax_cpu", [&] {
    fused_merge_argmax_kernel<scalar_t>(W.data_ptr<scalar_t>(), U.data_ptr<scalar_t>(),
                                        E.data_ptr<scalar_t>(), D.data_ptr<scalar_t>(), B, C, h, w,
                                        wf, out_h, out_w, out.data_ptr<int64_t>());
  });
  return out;
}

at::Tensor upsample_argmax_cpu(const at::Tensor& logits_q, int64_t out_h, int64_t out_w) {
  check_upsample_argmax_args(logits_q, out_h, out_w);
  const auto L = as_compute(logits_q);
  const int64_t B = L.size(0), C = L.size(1), h = L.size(2), w = L.size(3);
  auto out = at::empty({B, out_h, out_w}, logits_q.options().dtype(at::kLong));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(L.scalar_type(), "upsample_argmax_cpu", [&] {
    upsample_argmax_kernel<scalar_t>(L.data_ptr<scalar_t>(), B, C, h, w, out_h, out_w,
                                     out.data_ptr<int64_t>());
  });
  return out;
}

}  // namespace
}  // namespace evss

TORCH_LIBRARY_IMPL(evss, CPU, m) {
  m.impl("fused_merge_argmax", &evss::fused_merge_argmax_cpu);
  m.impl("upsample_argmax", &evss::upsample_argmax_cpu);
}
