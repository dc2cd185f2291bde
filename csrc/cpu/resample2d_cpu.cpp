// CPU kernels of evss::resample2d and its two backward ops (float32 and float64, any strides).
//
// Semantics (flownet2 Resample2d with kernel_size 1, as used by the EVSS warp):
//   out[b, c, y, x] = bilinear sample of input[b, c] at (xf, yf) = (x + u, y + v),
//   u = flow[b, 0, y, x], v = flow[b, 1, y, x] (pixels), every corner index clamped separately to
//   the input image: xL = clamp(floor(xf)), xR = clamp(floor(xf) + 1), likewise yT, yB.
//
// float32 arithmetic reproduces the original CUDA kernel bit for bit (the golden tests check it):
//   * forward: the top-left, top-right and bottom-left terms are formed in double and each rounded
//     to float, accumulated in float in that order starting from +0; the bottom-right weight a*b is a
//     float product and the last update is one fused multiply-add, fmaf(a*b, I_BR, acc);
//   * grad_input: fractions from truncation (a' = xf - int(xf)), float32 weights, each term rounded
//     to float and accumulated in the order b, c, y, x ascending, corners TL, TR, BL, BR (the order
//     of the reference's sequential replay of the atomics);
//   * grad_flow: float32, channel loop in order, four fused multiply-adds per channel.
// This file must be compiled with -ffp-contract=off (setup.py does it) so that the compiler does
// not fuse any other multiply and add; the fused operations are explicit std::fma calls.
// float64 uses the same formulas with every intermediate in double.
//
// Deviation from the original: all reads clamp to the INPUT's height and width.  The original
// clamped the forward and grad_flow to the flow's size (reading out of bounds when the input was
// smaller); the two agree whenever input and flow have the same H, W, the only case EVSS uses.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../resample2d.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace evss {
namespace {

inline void check_cpu_dtype(const char* op, const at::Tensor& input) {
  TORCH_CHECK(input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble, op,
              ": the CPU kernel supports float32 and float64, got ", input.scalar_type(),
              " (model.warp.warp() computes float16/bfloat16 CPU tensors in float32)");
}

// Instruction-set dispatch.  On x86-64 the hot loops are compiled a second time with AVX2 and FMA
// enabled (std::fma then is one instruction instead of a libm call) and that version is chosen at
// run time when the CPU has them.  Both versions perform exactly the same IEEE operations (this
// file is compiled with -ffp-contract=off, so no other multiply-add is fused), so the results are
// bit-identical.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(EVSS_NO_FMA_CLONE)
#define EVSS_FMA_CLONE __attribute__((target("avx2,fma"), flatten))
#endif

inline bool cpu_has_fma() {
#ifdef EVSS_FMA_CLONE
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

constexpr int64_t kTile = 256;  // pixels whose sampling geometry is computed together

// Geometry of one call: sizes and strides (in elements) of the three tensors involved.
struct Geometry {
  int64_t B, C, H, W, Hf, Wf;
  int64_t in_sB, in_sC, in_sH, in_sW;   // input (or grad_input)
  int64_t fl_sB, fl_sC, fl_sH, fl_sW;   // flow
  int64_t out_sB, out_sC, out_sH, out_sW;  // output (or grad_output)
};

Geometry make_geometry(const at::Tensor& input, const at::Tensor& flow, const at::Tensor& out) {
  Geometry g;
  g.B = flow.size(0);
  g.C = input.size(1);
  g.H = input.size(2);
  g.W = input.size(3);
  g.Hf = flow.size(2);
  g.Wf = flow.size(3);
  g.in_sB = input.stride(0); g.in_sC = input.stride(1); g.in_sH = input.stride(2); g.in_sW = input.stride(3);
  g.fl_sB = flow.stride(0); g.fl_sC = flow.stride(1); g.fl_sH = flow.stride(2); g.fl_sW = flow.stride(3);
  g.out_sB = out.stride(0); g.out_sC = out.stride(1); g.out_sH = out.stride(2); g.out_sW = out.stride(3);
  return g;
}

// ---------------------------------------------------------------------------------------------
// Forward

// Output pixels of the flattened (b, tile) task range [begin, end).
template <typename T>
inline void forward_range(const T* in, const T* fl, T* out, const Geometry& g, int64_t begin,
                          int64_t end) {
  const int64_t npix = g.Hf * g.Wf;
  const int64_t ntiles = (npix + kTile - 1) / kTile;
  // Loop order inside a tile: channels innermost when channels are the fastest dimension of the
  // input (channels_last), pixels innermost otherwise.  Each output element is computed by the
  // same expression either way, so the order does not change any result.
  const bool channels_inner = g.C > 1 && std::abs(g.in_sC) < std::abs(g.in_sW);
  int64_t off_tl[kTile], off_tr[kTile], off_bl[kTile], off_br[kTile], off_out[kTile];
  double w_tl[kTile], w_tr[kTile], w_bl[kTile];
  T w_br[kTile];
  for (int64_t task = begin; task < end; ++task) {
    const int64_t b = task / ntiles;
    const int64_t p0 = (task % ntiles) * kTile;
    const int64_t n = std::min(kTile, npix - p0);
    const T* flb = fl + b * g.fl_sB;
    for (int64_t k = 0; k < n; ++k) {
      const int64_t y = (p0 + k) / g.Wf;
      const int64_t x = (p0 + k) % g.Wf;
      const T u = flb[y * g.fl_sH + x * g.fl_sW];
      const T v = flb[g.fl_sC + y * g.fl_sH + x * g.fl_sW];
      const T xf = static_cast<T>(x) + u;
      const T yf = static_cast<T>(y) + v;
      const T fx = std::floor(xf);
      const T fy = std::floor(yf);
      const T a = xf - fx;
      const T bb = yf - fy;
      const int64_t xL = resample2d_clamp_index(fx, g.W);
      const int64_t xR = resample2d_clamp_index(fx + T(1), g.W);
      const int64_t yT = resample2d_clamp_index(fy, g.H);
      const int64_t yB = resample2d_clamp_index(fy + T(1), g.H);
      off_tl[k] = yT * g.in_sH + xL * g.in_sW;
      off_tr[k] = yT * g.in_sH + xR * g.in_sW;
      off_bl[k] = yB * g.in_sH + xL * g.in_sW;
      off_br[k] = yB * g.in_sH + xR * g.in_sW;
      off_out[k] = y * g.out_sH + x * g.out_sW;
      // The original's double literal 1. makes these three weights double products.
      const double ad = static_cast<double>(a);
      const double bd = static_cast<double>(bb);
      w_tl[k] = (1.0 - ad) * (1.0 - bd);
      w_tr[k] = ad * (1.0 - bd);
      w_bl[k] = (1.0 - ad) * bd;
      w_br[k] = a * bb;  // a float product for float32
    }
    const T* inb = in + b * g.in_sB;
    T* outb = out + b * g.out_sB;
    auto sample = [&](const T* plane, int64_t k) -> T {
      T acc = T(0);
      acc += static_cast<T>(w_tl[k] * static_cast<double>(plane[off_tl[k]]));
      acc += static_cast<T>(w_tr[k] * static_cast<double>(plane[off_tr[k]]));
      acc += static_cast<T>(w_bl[k] * static_cast<double>(plane[off_bl[k]]));
      return std::fma(w_br[k], plane[off_br[k]], acc);
    };
    if (channels_inner) {
      for (int64_t k = 0; k < n; ++k) {
        for (int64_t c = 0; c < g.C; ++c) {
          outb[c * g.out_sC + off_out[k]] = sample(inb + c * g.in_sC, k);
        }
      }
    } else {
      for (int64_t c = 0; c < g.C; ++c) {
        const T* plane = inb + c * g.in_sC;
        T* oplane = outb + c * g.out_sC;
        for (int64_t k = 0; k < n; ++k) {
          oplane[off_out[k]] = sample(plane, k);
        }
      }
    }
  }
}

template <typename T>
void forward_range_default(const T* in, const T* fl, T* out, const Geometry& g, int64_t begin,
                           int64_t end) {
  forward_range<T>(in, fl, out, g, begin, end);
}

#ifdef EVSS_FMA_CLONE
template <typename T>
EVSS_FMA_CLONE void forward_range_fma(const T* in, const T* fl, T* out, const Geometry& g,
                                      int64_t begin, int64_t end) {
  forward_range<T>(in, fl, out, g, begin, end);
}
#endif

template <typename T>
void forward_kernel(const T* in, const T* fl, T* out, const Geometry& g) {
  const int64_t npix = g.Hf * g.Wf;
  const int64_t ntiles = (npix + kTile - 1) / kTile;
  const int64_t work_per_task = std::max<int64_t>(1, kTile * g.C);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / work_per_task);
  auto run = &forward_range_default<T>;
#ifdef EVSS_FMA_CLONE
  if (cpu_has_fma()) run = &forward_range_fma<T>;
#endif
  at::parallel_for(0, g.B * ntiles, grain,
                   [&](int64_t begin, int64_t end) { run(in, fl, out, g, begin, end); });
}

at::Tensor resample2d_cpu(const at::Tensor& input, const at::Tensor& flow) {
  check_resample2d_args("evss::resample2d", input, flow);
  check_cpu_dtype("evss::resample2d", input);
  auto out = at::empty({flow.size(0), input.size(1), flow.size(2), flow.size(3)},
                       input.options().memory_format(resample2d_layout(input)));
  if (out.numel() == 0) return out;
  const Geometry g = make_geometry(input, flow, out);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "evss::resample2d", [&] {
    forward_kernel<scalar_t>(input.const_data_ptr<scalar_t>(), flow.const_data_ptr<scalar_t>(),
                             out.mutable_data_ptr<scalar_t>(), g);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Backward w.r.t. the input.
//
// Every (b, c) plane of grad_input receives contributions only from the same (b, c) plane of
// grad_output, so planes are processed in parallel while each plane is accumulated sequentially
// (y, x ascending, corners TL, TR, BL, BR): the result equals a fully sequential replay and does
// not depend on the number of threads.

template <typename T>
void backward_input_kernel(const T* go, const T* fl, T* gi, const Geometry& g) {
  // g.in_s* are grad_input's strides, g.out_s* grad_output's.
  const int64_t npix = g.Hf * g.Wf;
  std::vector<int64_t> offs(static_cast<size_t>(npix) * 5);
  std::vector<T> wts(static_cast<size_t>(npix) * 4);
  for (int64_t b = 0; b < g.B; ++b) {
    const T* flb = fl + b * g.fl_sB;
    at::parallel_for(0, npix, 4096, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t y = p / g.Wf;
        const int64_t x = p % g.Wf;
        const T u = flb[y * g.fl_sH + x * g.fl_sW];
        const T v = flb[g.fl_sC + y * g.fl_sH + x * g.fl_sW];
        const T xf = static_cast<T>(x) + u;
        const T yf = static_cast<T>(y) + v;
        // Truncation-based fractions, as in the original's backward (equal to the floor-based
        // ones for xf >= 0; for negative xf both x corners clamp to column 0).
        const T a = xf - resample2d_int_as(xf);
        const T bb = yf - resample2d_int_as(yf);
        const T fx = std::floor(xf);
        const T fy = std::floor(yf);
        const int64_t xL = resample2d_clamp_index(fx, g.W);
        const int64_t xR = resample2d_clamp_index(fx + T(1), g.W);
        const int64_t yT = resample2d_clamp_index(fy, g.H);
        const int64_t yB = resample2d_clamp_index(fy + T(1), g.H);
        int64_t* o = offs.data() + p * 5;
        o[0] = yT * g.in_sH + xL * g.in_sW;
        o[1] = yT * g.in_sH + xR * g.in_sW;
        o[2] = yB * g.in_sH + xL * g.in_sW;
        o[3] = yB * g.in_sH + xR * g.in_sW;
        o[4] = y * g.out_sH + x * g.out_sW;
        T* w = wts.data() + p * 4;
        const T one_a = T(1) - a;
        const T one_b = T(1) - bb;
        w[0] = one_a * one_b;
        w[1] = a * one_b;
        w[2] = one_a * bb;
        w[3] = a * bb;
      }
    });
    at::parallel_for(0, g.C, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const T* gop = go + b * g.out_sB + c * g.out_sC;
        T* gip = gi + b * g.in_sB + c * g.in_sC;
        for (int64_t p = 0; p < npix; ++p) {
          const int64_t* o = offs.data() + p * 5;
          const T* w = wts.data() + p * 4;
          const T gv = gop[o[4]];
          gip[o[0]] += w[0] * gv;
          gip[o[1]] += w[1] * gv;
          gip[o[2]] += w[2] * gv;
          gip[o[3]] += w[3] * gv;
        }
      }
    });
  }
}

at::Tensor resample2d_backward_input_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                         const at::Tensor& flow) {
  check_resample2d_args("evss::resample2d_backward_input", input, flow);
  check_cpu_dtype("evss::resample2d_backward_input", input);
  check_resample2d_grad_output("evss::resample2d_backward_input", grad_output, input, flow);
  auto grad_input = at::zeros(input.sizes(), input.options().memory_format(resample2d_layout(input)));
  if (grad_output.numel() == 0 || grad_input.numel() == 0) return grad_input;
  const Geometry g = make_geometry(grad_input, flow, grad_output);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "evss::resample2d_backward_input", [&] {
    backward_input_kernel<scalar_t>(grad_output.const_data_ptr<scalar_t>(),
                                    flow.const_data_ptr<scalar_t>(),
                                    grad_input.mutable_data_ptr<scalar_t>(), g);
  });
  return grad_input;
}

// ---------------------------------------------------------------------------------------------
// Backward w.r.t. the flow.
//   grad_u = sum_c g_c * [(1-b) (I_TR - I_TL) + b (I_BR - I_BL)]
//   grad_v = sum_c g_c * [(1-a) (I_BL - I_TL) + a (I_BR - I_TR)]
// evaluated as the original: gamma = 1 - b (resp. 1 - a), 1 - gamma recomputed, accumulator from 0,
// per channel four fused multiply-adds with the rounded products gamma * g and (1 - gamma) * g.
// Clamping is not differentiated (if both x corners clamp to the same column the u terms cancel).

struct FlowGradStrides {
  int64_t sB, sC, sH, sW;
};

// Flow pixels [begin, end) of the flattened (b, y, x) range.
template <typename T>
inline void backward_flow_range(const T* go, const T* in, const T* fl, T* gf, const Geometry& g,
                                const FlowGradStrides& gs, int64_t begin, int64_t end) {
  const int64_t npix = g.Hf * g.Wf;
  {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / npix;
      const int64_t p = i % npix;
      const int64_t y = p / g.Wf;
      const int64_t x = p % g.Wf;
      const T* flb = fl + b * g.fl_sB;
      const T u = flb[y * g.fl_sH + x * g.fl_sW];
      const T v = flb[g.fl_sC + y * g.fl_sH + x * g.fl_sW];
      const T xf = static_cast<T>(x) + u;
      const T yf = static_cast<T>(y) + v;
      const T fx = std::floor(xf);
      const T fy = std::floor(yf);
      const int64_t xL = resample2d_clamp_index(fx, g.W);
      const int64_t xR = resample2d_clamp_index(fx + T(1), g.W);
      const int64_t yT = resample2d_clamp_index(fy, g.H);
      const int64_t yB = resample2d_clamp_index(fy + T(1), g.H);
      const int64_t o_tl = yT * g.in_sH + xL * g.in_sW;
      const int64_t o_tr = yT * g.in_sH + xR * g.in_sW;
      const int64_t o_bl = yB * g.in_sH + xL * g.in_sW;
      const int64_t o_br = yB * g.in_sH + xR * g.in_sW;
      const T gamma_u = T(1) - (yf - fy);
      const T gamma_v = T(1) - (xf - fx);
      const T rest_u = T(1) - gamma_u;
      const T rest_v = T(1) - gamma_v;
      const T* inb = in + b * g.in_sB;
      const T* gob = go + b * g.out_sB + y * g.out_sH + x * g.out_sW;
      T acc_u = T(0);
      T acc_v = T(0);
      for (int64_t c = 0; c < g.C; ++c) {
        const T* plane = inb + c * g.in_sC;
        const T gv = gob[c * g.out_sC];
        const T i_tl = plane[o_tl];
        const T i_tr = plane[o_tr];
        const T i_bl = plane[o_bl];
        const T i_br = plane[o_br];
        const T pu = gamma_u * gv;
        const T qu = rest_u * gv;
        acc_u = std::fma(pu, i_tr, acc_u);
        acc_u = std::fma(-pu, i_tl, acc_u);
        acc_u = std::fma(qu, i_br, acc_u);
        acc_u = std::fma(-qu, i_bl, acc_u);
        const T pv = gamma_v * gv;
        const T qv = rest_v * gv;
        acc_v = std::fma(pv, i_bl, acc_v);
        acc_v = std::fma(-pv, i_tl, acc_v);
        acc_v = std::fma(qv, i_br, acc_v);
        acc_v = std::fma(-qv, i_tr, acc_v);
      }
      T* out = gf + b * gs.sB + y * gs.sH + x * gs.sW;
      out[0] = acc_u;
      out[gs.sC] = acc_v;
    }
  }
}

template <typename T>
void backward_flow_range_default(const T* go, const T* in, const T* fl, T* gf, const Geometry& g,
                                 const FlowGradStrides& gs, int64_t begin, int64_t end) {
  backward_flow_range<T>(go, in, fl, gf, g, gs, begin, end);
}

#ifdef EVSS_FMA_CLONE
template <typename T>
EVSS_FMA_CLONE void backward_flow_range_fma(const T* go, const T* in, const T* fl, T* gf,
                                            const Geometry& g, const FlowGradStrides& gs,
                                            int64_t begin, int64_t end) {
  backward_flow_range<T>(go, in, fl, gf, g, gs, begin, end);
}
#endif

template <typename T>
void backward_flow_kernel(const T* go, const T* in, const T* fl, T* gf, const Geometry& g,
                          const FlowGradStrides& gs) {
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, g.C));
  auto run = &backward_flow_range_default<T>;
#ifdef EVSS_FMA_CLONE
  if (cpu_has_fma()) run = &backward_flow_range_fma<T>;
#endif
  at::parallel_for(0, g.B * g.Hf * g.Wf, grain, [&](int64_t begin, int64_t end) {
    run(go, in, fl, gf, g, gs, begin, end);
  });
}

at::Tensor resample2d_backward_flow_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                        const at::Tensor& flow) {
  check_resample2d_args("evss::resample2d_backward_flow", input, flow);
  check_cpu_dtype("evss::resample2d_backward_flow", input);
  check_resample2d_grad_output("evss::resample2d_backward_flow", grad_output, input, flow);
  auto grad_flow = at::empty(flow.sizes(), flow.options().memory_format(resample2d_layout(flow)));
  if (grad_flow.numel() == 0) return grad_flow;
  if (input.size(1) == 0) {
    grad_flow.zero_();
    return grad_flow;
  }
  const Geometry g = make_geometry(input, flow, grad_output);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "evss::resample2d_backward_flow", [&] {
    backward_flow_kernel<scalar_t>(grad_output.const_data_ptr<scalar_t>(),
                                   input.const_data_ptr<scalar_t>(), flow.const_data_ptr<scalar_t>(),
                                   grad_flow.mutable_data_ptr<scalar_t>(), g,
                                   FlowGradStrides{grad_flow.stride(0), grad_flow.stride(1),
                                                   grad_flow.stride(2), grad_flow.stride(3)});
  });
  return grad_flow;
}

}  // namespace

TORCH_LIBRARY_IMPL(evss, CPU, m) {
  m.impl("resample2d", &resample2d_cpu);
  m.impl("resample2d_backward_input", &resample2d_backward_input_cpu);
  m.impl("resample2d_backward_flow", &resample2d_backward_flow_cpu);
}

}  // namespace evss
