// CPU kernel of evss::winograd_conv3x3: a 3x3 convolution (stride 1, padding 1) by Winograd's
// minimal filtering F(m x m, 3x3) (Lavin & Gray 2016), m = 4 or 6, for channels_last float32/bfloat16
// maps.
//
// The output is cut into m x m tiles; tile t reads the n x n input patch d_t around it (n = m + 2).
// Per tile, input channel c and output channel k:
//   V[xi, t, c] = (B^T d_t,c B)[xi]            (n^2 points xi, the input transform)
//   M[xi, t, k] = sum_c V[xi, t, c] U[xi, c, k]  (n^2 matrix products; U = G g G^T, precomputed)
//   y_t,k       = A^T M[:, t, k] A + bias[k]      (the m x m output tile, the output transform)
// which needs n^2 multiplications per m^2 outputs instead of 9 m^2: F(4x4, 3x3) 36 per 16 (4x fewer
// than a direct 3x3 convolution), F(6x6, 3x3) 64 per 36 (5.1x fewer).  U's first dimension (36 or
// 64) names the form.  Tiles are processed in chunks small enough for V and M to stay in a core's
// cache; each thread transforms its chunk, multiplies it with at::bmm (single-threaded inside the
// parallel region) and writes the output.  The transforms compute in float32 (bfloat16 maps are
// widened on load and rounded once on store).  The matrix products run in U's dtype: float32, or
// bfloat16 (V and M rounded to bfloat16, sums accumulated in float32 by oneDNN; ~3x the float32
// GEMM rate on CPUs with AVX512-BF16, for the fast mode).  The points are 0, +-1, +-2 and infinity,
// and +-1/2 for m = 6; float32 results differ from a direct convolution by rounding, typically
// 10-40x the direct one's error for m = 4 and about twice that for m = 6 (still ~1e-6 of the
// output's magnitude) -- see model/winograd.py and the tests.
//
// space_to_depth = s > 1 convolves the space-to-depth rearrangement of the input instead: its pixel
// (y, x) holds, phase-major, the s*s pixels (s y + ry, s x + rx) of the input (channel (ry s + rx) C + c
// is input channel c there; zero beyond the input's edge), read in place while transforming.  A 5x5
// stride-2 convolution (padding 2) is a 3x3 convolution of the s = 2 rearrangement with a rearranged
// filter (model/winograd.py), so it gets Winograd's fewer multiplications too (for m = 4, 9 C K per
// output against the direct 25 C K).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "isa_clones.h"

namespace evss {
namespace {

constexpr int64_t kBlock = 64;  // channels transformed together

// Tiles per chunk.  V and M of a chunk, points * tiles * (C + K) floats, take about 2 MiB (a core's L2;
// 1 to 8 MiB measured the same within noise for 128 -> 128 channels), but never less than U
// (points * C * K floats), which every chunk reads again: with 512 -> 512 channels, chunks of 16 tiles
// multiplied at 46 GFLOP/s, chunks of 256 near the peak.
int64_t chunk_tiles(int64_t points, int64_t c, int64_t k) {
  const int64_t cache = (int64_t{1} << 19) / (points * (c + k));
  const int64_t reuse = (c * k + c + k - 1) / (c + k);
  const int64_t tiles = std::max(cache, reuse);
  return std::clamp<int64_t>((tiles + 7) / 8 * 8, 16, 512);
}

// F(4x4, 3x3): patch side 6, tile side 4.
struct F4x4 {
  static constexpr int64_t kPatch = 6, kTile = 4;

  // r[i] = (B^T d)[i] for six rows of n channels each.
  template <typename T, typename S>
  static EVSS_INLINE void input_rows(const T* const d[6], S* const r[6], int64_t n) {
#pragma GCC ivdep
    for (int64_t c = 0; c < n; ++c) {
      const float d0 = d[0][c], d1 = d[1][c], d2 = d[2][c], d3 = d[3][c], d4 = d[4][c], d5 = d[5][c];
      r[0][c] = static_cast<S>(4.f * d0 - 5.f * d2 + d4);
      r[1][c] = static_cast<S>(-4.f * d1 - 4.f * d2 + d3 + d4);
      r[2][c] = static_cast<S>(4.f * d1 - 4.f * d2 - d3 + d4);
      r[3][c] = static_cast<S>(-2.f * d1 - d2 + 2.f * d3 + d4);
      r[4][c] = static_cast<S>(2.f * d1 - d2 - 2.f * d3 + d4);
      r[5][c] = static_cast<S>(4.f * d1 - 5.f * d3 + d5);
    }
  }

  // r[i] = (A^T m)[i] for four rows of n channels each, from six.
  template <typename S>
  static EVSS_INLINE void output_rows(const S* const m[6], float* const r[4], int64_t n) {
#pragma GCC ivdep
    for (int64_t c = 0; c < n; ++c) {
      const float m0 = m[0][c], m1 = m[1][c], m2 = m[2][c], m3 = m[3][c], m4 = m[4][c], m5 = m[5][c];
      r[0][c] = m0 + m1 + m2 + m3 + m4;
      r[1][c] = m1 - m2 + 2.f * (m3 - m4);
      r[2][c] = m1 + m2 + 4.f * (m3 + m4);
      r[3][c] = m1 - m2 + 8.f * (m3 - m4) + m5;
    }
  }
};

// F(6x6, 3x3): patch side 8, tile side 6 (points 0, +-1, +-2, +-1/2 and infinity).
struct F6x6 {
  static constexpr int64_t kPatch = 8, kTile = 6;

  // r[i] = (B^T d)[i] for eight rows of n channels each.
  template <typename T, typename S>
  static EVSS_INLINE void input_rows(const T* const d[8], S* const r[8], int64_t n) {
#pragma GCC ivdep
    for (int64_t c = 0; c < n; ++c) {
      const float d0 = d[0][c], d1 = d[1][c], d2 = d[2][c], d3 = d[3][c];
      const float d4 = d[4][c], d5 = d[5][c], d6 = d[6][c], d7 = d[7][c];
      r[0][c] = static_cast<S>(d0 - d6 + 5.25f * (d4 - d2));
      r[7][c] = static_cast<S>(d7 - d1 + 5.25f * (d3 - d5));
      const float a1 = d2 + d6 - 4.25f * d4, b1 = d1 + d5 - 4.25f * d3;
      r[1][c] = static_cast<S>(a1 + b1);
      r[2][c] = static_cast<S>(a1 - b1);
      const float a3 = 0.25f * d2 - 1.25f * d4 + d6, b3 = 0.5f * d1 - 2.5f * d3 + 2.f * d5;
      r[3][c] = static_cast<S>(a3 + b3);
      r[4][c] = static_cast<S>(a3 - b3);
      const float a5 = 4.f * d2 - 5.f * d4 + d6, b5 = 2.f * d1 - 2.5f * d3 + 0.5f * d5;
      r[5][c] = static_cast<S>(a5 + b5);
      r[6][c] = static_cast<S>(a5 - b5);
    }
  }

  // r[i] = (A^T m)[i] for six rows of n channels each, from eight.
  template <typename S>
  static EVSS_INLINE void output_rows(const S* const m[8], float* const r[6], int64_t n) {
#pragma GCC ivdep
    for (int64_t c = 0; c < n; ++c) {
      const float m0 = m[0][c], m7 = m[7][c];
      const float p1 = m[1][c] + m[2][c], q1 = m[1][c] - m[2][c];
      const float p2 = m[3][c] + m[4][c], q2 = m[3][c] - m[4][c];
      const float p3 = m[5][c] + m[6][c], q3 = m[5][c] - m[6][c];
      r[0][c] = m0 + p1 + p2 + p3;
      r[1][c] = q1 + 2.f * q2 + 0.5f * q3;
      r[2][c] = p1 + 4.f * p2 + 0.25f * p3;
      r[3][c] = q1 + 8.f * q2 + 0.125f * q3;
      r[4][c] = p1 + 16.f * p2 + 0.0625f * p3;
      r[5][c] = q1 + 32.f * q2 + 0.03125f * q3 + m7;
    }
  }
};

// h, w: the output's (and the rearranged input's) size; c = s * s * input channels.
struct Geometry {
  int64_t n, c, k, h, w, tiles_h, tiles_w;
  int64_t s, in_c, in_h, in_w;  // space-to-depth block, the input's channels and size
  int64_t tiles() const { return n * tiles_h * tiles_w; }
};

// V[xi, j, :] for the tiles [t0, t0 + count) of the input (NHWC), j = t - t0.
template <typename Form, typename T, typename S>
EVSS_ISA_CLONES void transform_input(const T* input, const T* zeros, const Geometry& g, int64_t t0,
                                     int64_t count, int64_t stride_v, S* v) {
  constexpr int64_t kPatch = Form::kPatch, kTile = Form::kTile;
  alignas(64) float tmp[kPatch * kPatch][kBlock];
  for (int64_t j = 0; j < count; ++j) {
    const int64_t t = t0 + j;
    const int64_t b = t / (g.tiles_h * g.tiles_w), tile = t % (g.tiles_h * g.tiles_w);
    const int64_t y0 = (tile / g.tiles_w) * kTile - 1, x0 = (tile % g.tiles_w) * kTile - 1;
    for (int64_t phase = 0; phase < g.s * g.s; ++phase) {
      const int64_t ry = phase / g.s, rx = phase % g.s;
      std::array<const T*, kPatch * kPatch> src;  // the patch's pixels of this phase; the zero row outside the image
      for (int64_t i = 0; i < kPatch; ++i) {
        for (int64_t q = 0; q < kPatch; ++q) {
          const int64_t y = (y0 + i) * g.s + ry, x = (x0 + q) * g.s + rx;
          const bool inside = y0 + i >= 0 && y < g.in_h && x0 + q >= 0 && x < g.in_w;
          src[i * kPatch + q] = inside ? input + ((b * g.in_h + y) * g.in_w + x) * g.in_c : zeros;
        }
      }
      for (int64_t c0 = 0; c0 < g.in_c; c0 += kBlock) {
        const int64_t nc = std::min(kBlock, g.in_c - c0), v0 = phase * g.in_c + c0;
        for (int64_t q = 0; q < kPatch; ++q) {  // columns: tmp = B^T d
          const T* d[kPatch];
          float* r[kPatch];
          for (int64_t i = 0; i < kPatch; ++i) {
            d[i] = src[i * kPatch + q] + c0;
            r[i] = tmp[i * kPatch + q];
          }
          Form::input_rows(d, r, nc);
        }
        for (int64_t i = 0; i < kPatch; ++i) {  // rows: V = tmp B
          const float* d[kPatch];
          S* r[kPatch];
          for (int64_t q = 0; q < kPatch; ++q) {
            d[q] = tmp[i * kPatch + q];
            r[q] = v + (i * kPatch + q) * stride_v + j * g.c + v0;
          }
          Form::input_rows(d, r, nc);
        }
      }
    }
  }
}

// The output tiles [t0, t0 + count) from M[xi, j, :] (j = t - t0), plus the bias, into NHWC.
template <typename Form, typename T, typename S>
EVSS_ISA_CLONES void transform_output(const S* m, const float* bias, const Geometry& g, int64_t t0,
                                      int64_t count, int64_t stride_m, T* output) {
  constexpr int64_t kPatch = Form::kPatch, kTile = Form::kTile;
  alignas(64) float tmp[kTile * kPatch][kBlock];
  alignas(64) float out[kTile * kTile][kBlock];
  for (int64_t j = 0; j < count; ++j) {
    const int64_t t = t0 + j;
    const int64_t b = t / (g.tiles_h * g.tiles_w), tile = t % (g.tiles_h * g.tiles_w);
    const int64_t y0 = (tile / g.tiles_w) * kTile, x0 = (tile % g.tiles_w) * kTile;
    for (int64_t k0 = 0; k0 < g.k; k0 += kBlock) {
      const int64_t nk = std::min(kBlock, g.k - k0);
      for (int64_t q = 0; q < kPatch; ++q) {  // columns: tmp = A^T M
        const S* d[kPatch];
        float* r[kTile];
        for (int64_t i = 0; i < kPatch; ++i) d[i] = m + (i * kPatch + q) * stride_m + j * g.k + k0;
        for (int64_t i = 0; i < kTile; ++i) r[i] = tmp[i * kPatch + q];
        Form::output_rows(d, r, nk);
      }
      for (int64_t i = 0; i < kTile; ++i) {  // rows: y = tmp A
        const float* d[kPatch];
        float* r[kTile];
        for (int64_t q = 0; q < kPatch; ++q) d[q] = tmp[i * kPatch + q];
        for (int64_t q = 0; q < kTile; ++q) r[q] = out[i * kTile + q];
        Form::output_rows(d, r, nk);
      }
      for (int64_t i = 0; i < kTile && y0 + i < g.h; ++i) {
        for (int64_t q = 0; q < kTile && x0 + q < g.w; ++q) {
          T* dst = output + ((b * g.h + y0 + i) * g.w + x0 + q) * g.k + k0;
          const float* val = out[i * kTile + q];
          if (bias != nullptr) {
            for (int64_t c = 0; c < nk; ++c) dst[c] = static_cast<T>(val[c] + bias[k0 + c]);
          } else {
            for (int64_t c = 0; c < nk; ++c) dst[c] = static_cast<T>(val[c]);
          }
        }
      }
    }
  }
}

template <typename Form, typename T, typename S>
void run_chunks(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias, const Geometry& g,
                at::Tensor& output) {
  constexpr int64_t kPoints = Form::kPatch * Form::kPatch;
  // as many chunks for every thread, at most chunk_tiles each: threads that wait cost more than
  // rereading U (with 5 chunks on 2 threads, one thread idles for a fifth of the layer)
  const int64_t threads = at::get_num_threads();
  const int64_t most = chunk_tiles(kPoints, g.c, g.k);
  const int64_t rounds = std::max<int64_t>(1, (g.tiles() + threads * most - 1) / (threads * most));
  const int64_t even = (g.tiles() + threads * rounds - 1) / (threads * rounds);
  const int64_t per_chunk = std::max<int64_t>(8, (even + 7) / 8 * 8);
  const int64_t chunks = (g.tiles() + per_chunk - 1) / per_chunk;
  const std::vector<T> zeros(g.in_c, T(0));
  const T* in = x.const_data_ptr<T>();
  T* out = output.mutable_data_ptr<T>();
  const float* bias_ptr = bias.defined() ? bias.const_data_ptr<float>() : nullptr;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    at::Tensor v = at::empty({kPoints, per_chunk, g.c}, u.options());
    at::Tensor m = at::empty({kPoints, per_chunk, g.k}, u.options());
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int64_t t0 = chunk * per_chunk, count = std::min(per_chunk, g.tiles() - t0);
      if (count < per_chunk) v.narrow(1, count, per_chunk - count).zero_();  // a short last chunk
      transform_input<Form>(in, zeros.data(), g, t0, count, per_chunk * g.c, v.mutable_data_ptr<S>());
      at::bmm_out(m, v, u);  // single-threaded here: each thread multiplies its own chunk
      transform_output<Form>(m.const_data_ptr<S>(), bias_ptr, g, t0, count, per_chunk * g.k, out);
    }
  });
}

// run_chunks for the input's and the products' dtypes.
template <typename Form>
void run_form(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias, const Geometry& g, at::Tensor& output) {
  using BF16 = c10::BFloat16;
  const bool bf16_in = x.scalar_type() == at::kBFloat16, bf16_products = u.scalar_type() == at::kBFloat16;
  if (!bf16_in && !bf16_products) run_chunks<Form, float, float>(x, u, bias, g, output);
  if (!bf16_in && bf16_products) run_chunks<Form, float, BF16>(x, u, bias, g, output);
  if (bf16_in && !bf16_products) run_chunks<Form, BF16, float>(x, u, bias, g, output);
  if (bf16_in && bf16_products) run_chunks<Form, BF16, BF16>(x, u, bias, g, output);
}

at::Tensor winograd_conv3x3_cpu(const at::Tensor& input, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, int64_t space_to_depth) {
  TORCH_CHECK(input.dim() == 4, "winograd_conv3x3: input must be 4-D (B, C, H, W), got shape ", input.sizes());
  TORCH_CHECK(input.scalar_type() == at::kFloat || input.scalar_type() == at::kBFloat16,
              "winograd_conv3x3: input must be float32 or bfloat16, got ", input.scalar_type());
  TORCH_CHECK(space_to_depth >= 1, "winograd_conv3x3: space_to_depth must be >= 1, got ", space_to_depth);
  const int64_t s = space_to_depth, c = s * s * input.size(1);
  TORCH_CHECK(weight.dim() == 3 && (weight.size(0) == 36 || weight.size(0) == 64) && weight.size(1) == c,
              "winograd_conv3x3: weight must be the transformed filter (36 or 64, C, K) with C = ", c,
              " (space_to_depth^2 x input channels; model.winograd.winograd_weight), got shape ", weight.sizes());
  TORCH_CHECK(weight.scalar_type() == at::kFloat || weight.scalar_type() == at::kBFloat16,
              "winograd_conv3x3: weight must be float32 or bfloat16 (the matrix products' precision), got ",
              weight.scalar_type());
  TORCH_CHECK(weight.device() == input.device(), "winograd_conv3x3: input and weight must be on the same device");
  const int64_t h = (input.size(2) + s - 1) / s, w = (input.size(3) + s - 1) / s;
  const int64_t tile = weight.size(0) == 36 ? F4x4::kTile : F6x6::kTile;
  const Geometry g{input.size(0), c, weight.size(2), h, w, (h + tile - 1) / tile, (w + tile - 1) / tile,
                   s, input.size(1), input.size(2), input.size(3)};
  at::Tensor bias_f;
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == g.k, "winograd_conv3x3: bias must have shape (", g.k,
                "), got ", bias->sizes());
    TORCH_CHECK(bias->device() == input.device(), "winograd_conv3x3: input and bias must be on the same device");
    bias_f = bias->to(at::kFloat).contiguous();
  }
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor u = weight.contiguous();
  at::Tensor output = at::empty({g.n, g.k, g.h, g.w}, input.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (output.numel() == 0) return output;
  if (g.c == 0) return bias_f.defined() ? output.copy_(bias_f.view({1, g.k, 1, 1}).expand_as(output))
                                        : output.zero_();

  if (tile == F4x4::kTile) {
    run_form<F4x4>(x, u, bias_f, g, output);
  } else {
    run_form<F6x6>(x, u, bias_f, g, output);
  }
  return output;
}

}  // namespace

TORCH_LIBRARY_IMPL(evss, CPU, m) {
  m.impl("winograd_conv3x3", &winograd_conv3x3_cpu);
}

}  // namespace evss
