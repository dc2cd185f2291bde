// CPU kernels of evss::fused_merge_argmax and evss::upsample_argmax (see csrc/fusion.h).
//
// One output row at a time (rows of all images are split among threads with at::parallel_for).
// A x4 bilinear row is built "phase-planar": output column x = 4j + k is stored at k * w + j, so
// each of the four phases k is a contiguous loop over the source columns j with two fixed weights
// and shifted, contiguous loads (no gathers; it vectorises).  The row's distortion map dm and
// 1 - dm are computed once, then each class's merged value is formed for the whole row and
// compared with the running maximum; the winning classes are interleaved back into output order
// once per row.  Nothing of full-resolution size is allocated besides the int64 prediction.
// The arithmetic follows the unfused path's order (bilinear: horizontal then vertical; softmax;
// (1-wf)*p + wf*d; w*(1-dm) + u*dm) in the input's precision, so results agree with
// fuse(...).logits.argmax(1) up to float rounding (exactly the same where the top-2 margin
// exceeds a few ulps).  float16/bfloat16 inputs are computed in float32.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "fusion.h"

#include "isa_clones.h"  // the row kernels are built for AVX-512, AVX2 and the baseline ISA

namespace evss {
namespace {

// Source rows (or columns) and weights of every output index of a x4 upsampling of n samples.
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

// The columns of a x4 upsampling of a w-wide row, by phase k = x mod 4.  For j in [lo[k], hi[k])
// output 4j + k reads source columns j + shift[k] and j + shift[k] + 1 with weights l0[k], l1[k]
// (the interior); the few border outputs outside that range are taken from the general table.
template <typename T>
struct ColumnPhases {
  int64_t w;
  std::array<int64_t, 4> shift, lo, hi;
  std::array<T, 4> l0, l1;
  Axis<T> border;
  explicit ColumnPhases(int64_t w_) : w(w_), border(4 * w_, w_) {
    for (int k = 0; k < 4; ++k) {
      int64_t a, b;
      up4_index<T>(8 + k, 1 << 20, a, b, l0[k], l1[k]);  // column 2 of a long row: interior
      shift[k] = a - 2;
      lo[k] = std::min<int64_t>(w, std::max<int64_t>(0, -shift[k]));
      hi[k] = std::max<int64_t>(lo[k], w - 1 - shift[k]);
    }
  }
};

// out[k*w + j] = value of output column 4j + k of the row interpolated between source rows r0, r1
// (weights ly0, ly1): (r0[c0]*lx0 + r0[c1]*lx1)*ly0 + (r1[c0]*lx0 + r1[c1]*lx1)*ly1.
template <typename T>
EVSS_INLINE void interp_row(const T* __restrict r0, const T* __restrict r1, T ly0, T ly1,
                            const ColumnPhases<T>& ph, T* __restrict out) {
  const int64_t w = ph.w;
  for (int k = 0; k < 4; ++k) {
    T* __restrict o = out + k * w;
    const T* __restrict a0 = r0 + ph.shift[k];
    const T* __restrict a1 = r1 + ph.shift[k];
    const T lx0 = ph.l0[k], lx1 = ph.l1[k];
    for (int64_t j = ph.lo[k]; j < ph.hi[k]; ++j) {
      const T t0 = a0[j] * lx0 + a0[j + 1] * lx1;
      const T t1 = a1[j] * lx0 + a1[j + 1] * lx1;
      o[j] = t0 * ly0 + t1 * ly1;
    }
    const auto border = [&](int64_t j) {
      const int64_t x = 4 * j + k;
      const int32_t c0 = ph.border.i0[x], c1 = ph.border.i1[x];
      const T t0 = r0[c0] * ph.border.l0[x] + r0[c1] * ph.border.l1[x];
      const T t1 = r1[c0] * ph.border.l0[x] + r1[c1] * ph.border.l1[x];
      o[j] = t0 * ly0 + t1 * ly1;
    };
    for (int64_t j = 0; j < ph.lo[k]; ++j) border(j);
    for (int64_t j = ph.hi[k]; j < w; ++j) border(j);
  }
}

// Running argmax over classes: take the new value when it is larger, or NaN over a non-NaN.
template <typename T>
EVSS_INLINE void argmax_update(const T* __restrict m, int32_t c, int64_t n, T* __restrict best,
                               int32_t* __restrict arg) {
  for (int64_t x = 0; x < n; ++x) {
    const T v = m[x];
    const T b = best[x];
    const bool take = (v > b) || (v != v && b == b);
    best[x] = take ? v : b;
    arg[x] = take ? c : arg[x];
  }
}

// The phase-planar winners of one row, written in output order and cropped to ow columns.
EVSS_INLINE void store_row(const int32_t* __restrict arg, int64_t w, int64_t ow, int64_t* __restrict o) {
  for (int64_t x = 0; x < ow; ++x) o[x] = arg[(x & 3) * w + (x >> 2)];
}

// The inputs of one fused_merge_argmax call (planes of h x w, NCHW-contiguous).
template <typename T>
struct MergeArgs {
  const T *W, *U, *E, *D;
  int64_t C, h, w, oh, ow;
  T a, bwf;  // 1 - wf, wf
  const ColumnPhases<T>& ph;
  const Axis<T>& ay;
  int64_t* out;
};

// Output rows [begin, end) (rows of all images, r = b * oh + y) of fused_merge_argmax.
template <typename T>
EVSS_ISA_CLONES void merge_rows(const MergeArgs<T>& g, int64_t begin, int64_t end) {
  const int64_t plane = g.h * g.w, w = g.w, n = 4 * g.w;
  std::vector<T> e0(n), e1(n), dm(n), om(n), wu(n), uu(n), best(n);
  std::vector<int32_t> arg(n);
  for (int64_t r = begin; r < end; ++r) {
    const int64_t b = r / g.oh, y = r % g.oh;
    const int64_t y0 = g.ay.i0[y], y1 = g.ay.i1[y];
    const T ly0 = g.ay.l0[y], ly1 = g.ay.l1[y];
    const T* Eb = g.E + b * 2 * plane;
    const T* Db = g.D + b * plane;
    interp_row<T>(Eb + y0 * w, Eb + y1 * w, ly0, ly1, g.ph, e0.data());
    interp_row<T>(Eb + plane + y0 * w, Eb + plane + y1 * w, ly0, ly1, g.ph, e1.data());
    interp_row<T>(Db + y0 * w, Db + y1 * w, ly0, ly1, g.ph, dm.data());
    for (int64_t x = 0; x < n; ++x) {
      // softmax over two classes: the larger one's exp(0) is exactly 1, one exp remains
      const T diff = e1[x] - e0[x];
      T p;
      if (diff > 0) {
        p = static_cast<T>(1) / (std::exp(e0[x] - e1[x]) + static_cast<T>(1));
      } else {
        const T z1 = std::exp(diff);
        p = z1 / (static_cast<T>(1) + z1);
      }
      const T d = g.a * p + g.bwf * dm[x];
      dm[x] = d;
      om[x] = static_cast<T>(1) - d;
    }
    const T* Wb = g.W + b * g.C * plane;
    const T* Ub = g.U + b * g.C * plane;
    for (int64_t c = 0; c < g.C; ++c) {
      const T* Wc = Wb + c * plane;
      const T* Uc = Ub + c * plane;
      interp_row<T>(Wc + y0 * w, Wc + y1 * w, ly0, ly1, g.ph, wu.data());
      interp_row<T>(Uc + y0 * w, Uc + y1 * w, ly0, ly1, g.ph, uu.data());
      T* __restrict m = wu.data();
      const T* __restrict uup = uu.data();
      const T* __restrict omp = om.data();
      const T* __restrict dmp = dm.data();
      for (int64_t x = 0; x < n; ++x) m[x] = m[x] * omp[x] + uup[x] * dmp[x];
      if (c == 0) {
        std::copy(m, m + n, best.begin());
        std::fill(arg.begin(), arg.end(), 0);
      } else {
        argmax_update<T>(m, static_cast<int32_t>(c), n, best.data(), arg.data());
      }
    }
    store_row(arg.data(), w, g.ow, g.out + r * g.ow);
  }
}

// Output rows [begin, end) of upsample_argmax of the C planes L.
template <typename T>
EVSS_ISA_CLONES void upsample_rows(const T* L, int64_t C, int64_t h, int64_t w, int64_t oh, int64_t ow,
                                   const ColumnPhases<T>& ph, const Axis<T>& ay, int64_t* out,
                                   int64_t begin, int64_t end) {
  const int64_t plane = h * w, n = 4 * w;
  std::vector<T> m(n), best(n);
  std::vector<int32_t> arg(n);
  for (int64_t r = begin; r < end; ++r) {
    const int64_t b = r / oh, y = r % oh;
    const int64_t y0 = ay.i0[y], y1 = ay.i1[y];
    const T ly0 = ay.l0[y], ly1 = ay.l1[y];
    const T* Lb = L + b * C * plane;
    for (int64_t c = 0; c < C; ++c) {
      const T* Lc = Lb + c * plane;
      interp_row<T>(Lc + y0 * w, Lc + y1 * w, ly0, ly1, ph, c == 0 ? best.data() : m.data());
      if (c == 0) {
        std::fill(arg.begin(), arg.end(), 0);
      } else {
        argmax_update<T>(m.data(), static_cast<int32_t>(c), n, best.data(), arg.data());
      }
    }
    store_row(arg.data(), w, ow, out + r * ow);
  }
}

template <typename T>
void fused_merge_argmax_kernel(const T* W, const T* U, const T* E, const T* D, int64_t B, int64_t C,
                               int64_t h, int64_t w, double wf, int64_t oh, int64_t ow, int64_t* out) {
  const ColumnPhases<T> ph(w);
  const Axis<T> ay(oh, h);
  const MergeArgs<T> args{W, U, E, D, C, h, w, oh, ow, static_cast<T>(1.0 - wf), static_cast<T>(wf), ph, ay, out};
  at::parallel_for(0, B * oh, 8, [&](int64_t begin, int64_t end) { merge_rows<T>(args, begin, end); });
}

template <typename T>
void upsample_argmax_kernel(const T* L, int64_t B, int64_t C, int64_t h, int64_t w, int64_t oh,
                            int64_t ow, int64_t* out) {
  const ColumnPhases<T> ph(w);
  const Axis<T> ay(oh, h);
  at::parallel_for(0, B * oh, 8, [&](int64_t begin, int64_t end) {
    upsample_rows<T>(L, C, h, w, oh, ow, ph, ay, out, begin, end);
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
