// CUDA kernels of evss::resample2d and its two backward ops.
//
// dtypes: float32, float64, float16, bfloat16.  Half and bfloat16 values are converted to float on
// load and every computation is done exactly as for float32 (the result is the float32 result of
// the converted inputs, rounded once to the storage type); grad_input of half/bfloat16 is
// accumulated in a float32 buffer and converted at the end.  Any strides are accepted.
//
// float32 arithmetic follows the original flownet2 kernel (see the header of
// csrc/cpu/resample2d_cpu.cpp).  Every rounding step is
// spelled out with the _rn intrinsics (never contracted into an FMA by nvcc) and every fused
// multiply-add of the original is an explicit fma, so the numerics do not depend on nvcc's -fmad
// setting and equal the CPU kernels', except for the summation order of grad_input, which uses
// atomicAdd (order unspecified, as in the original).
//
// Only c10/cuda headers are used (not ATen/cuda/CUDAContext.h, which needs the cuBLAS/cuSPARSE
// headers that a minimal CUDA toolkit lacks).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "../resample2d.h"

namespace evss {
namespace {

struct Strides4 {
  int64_t b, c, h, w;
};

struct Dims {
  int64_t B, C, H, W;  // input (sampled image)
  int64_t Hf, Wf;      // flow / output grid
};

inline Strides4 strides_of(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

inline Dims dims_of(const at::Tensor& input, const at::Tensor& flow) {
  return {flow.size(0), input.size(1), input.size(2), input.size(3), flow.size(2), flow.size(3)};
}

// Correctly rounded operations that nvcc never fuses, and explicit fused multiply-adds.
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float fma_rn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fma_rn(double a, double b, double c) { return __fma_rn(a, b, c); }
__device__ __forceinline__ float floor_(float a) { return floorf(a); }
__device__ __forceinline__ double floor_(double a) { return ::floor(a); }

// Sampling position of output pixel (x, y): xf = x + u, yf = y + v, in the compute type.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void sample_position(const scalar_t* __restrict__ fl, const Strides4& fs,
                                                int64_t b, int64_t y, int64_t x, acc_t& xf, acc_t& yf) {
  const int64_t o = b * fs.b + y * fs.h + x * fs.w;
  xf = add_rn(static_cast<acc_t>(x), static_cast<acc_t>(fl[o]));
  yf = add_rn(static_cast<acc_t>(y), static_cast<acc_t>(fl[o + fs.c]));
}

// Plane offsets of the four clamped corners (TL, TR, BL, BR) from the floors of xf and yf.
template <typename acc_t>
__device__ __forceinline__ void corner_offsets(acc_t fx, acc_t fy, int64_t H, int64_t W,
                                               const Strides4& s, int64_t off[4]) {
  const int64_t xL = resample2d_clamp_index(fx, W);
  const int64_t xR = resample2d_clamp_index(add_rn(fx, acc_t(1)), W);
  const int64_t yT = resample2d_clamp_index(fy, H);
  const int64_t yB = resample2d_clamp_index(add_rn(fy, acc_t(1)), H);
  off[0] = yT * s.h + xL * s.w;
  off[1] = yT * s.h + xR * s.w;
  off[2] = yB * s.h + xL * s.w;
  off[3] = yB * s.h + xR * s.w;
}

// Grid size for a grid-stride loop over n elements: enough blocks to fill the GPU, no more.
inline int64_t num_blocks(int64_t n, int threads) {
  int device = 0;
  int sms = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t needed = (n + threads - 1) / threads;
  const int64_t cap = static_cast<int64_t>(std::max(sms, 1)) * 32;
  return std::max<int64_t>(1, std::min(needed, cap));
}

constexpr int kThreads = 256;

// ---------------------------------------------------------------------------------------------
// Forward: one thread per output element (b, c, y, x), grid-stride loop.

template <typename scalar_t>
__global__ void resample2d_forward_kernel(int64_t n, const scalar_t* __restrict__ in, Strides4 is,
                                          const scalar_t* __restrict__ fl, Strides4 fs,
                                          scalar_t* __restrict__ out, Strides4 os, Dims d) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; index < n;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t x = index % d.Wf;
    int64_t t = index / d.Wf;
    const int64_t y = t % d.Hf;
    t /= d.Hf;
    const int64_t c = t % d.C;
    const int64_t b = t / d.C;

    acc_t xf, yf;
    sample_position<scalar_t, acc_t>(fl, fs, b, y, x, xf, yf);
    const acc_t fx = floor_(xf);
    const acc_t fy = floor_(yf);
    const acc_t a = sub_rn(xf, fx);
    const acc_t bb = sub_rn(yf, fy);
    int64_t off[4];
    corner_offsets(fx, fy, d.H, d.W, is, off);
    const scalar_t* plane = in + b * is.b + c * is.c;

    // Terms 1-3 in double (the original's double literal 1.), each rounded to the compute type;
    // term 4 with the compute-type weight a*b and one fused multiply-add.
    const double ad = static_cast<double>(a);
    const double bd = static_cast<double>(bb);
    const double w_tl = __dmul_rn(__dsub_rn(1.0, ad), __dsub_rn(1.0, bd));
    const double w_tr = __dmul_rn(ad, __dsub_rn(1.0, bd));
    const double w_bl = __dmul_rn(__dsub_rn(1.0, ad), bd);
    acc_t acc = acc_t(0);
    acc = add_rn(acc, static_cast<acc_t>(__dmul_rn(w_tl, static_cast<double>(static_cast<acc_t>(plane[off[0]])))));
    acc = add_rn(acc, static_cast<acc_t>(__dmul_rn(w_tr, static_cast<double>(static_cast<acc_t>(plane[off[1]])))));
    acc = add_rn(acc, static_cast<acc_t>(__dmul_rn(w_bl, static_cast<double>(static_cast<acc_t>(plane[off[2]])))));
    acc = fma_rn(mul_rn(a, bb), static_cast<acc_t>(plane[off[3]]), acc);
    out[b * os.b + c * os.c + y * os.h + x * os.w] = static_cast<scalar_t>(acc);
  }
}

// ---------------------------------------------------------------------------------------------
// grad_input: one thread per grad_output element, four atomic adds (truncation-based fractions).

template <typename scalar_t, typename acc_t>
__global__ void resample2d_backward_input_kernel(int64_t n, const scalar_t* __restrict__ go,
                                                 Strides4 gs, const scalar_t* __restrict__ fl,
                                                 Strides4 fs, acc_t* __restrict__ gi, Strides4 is,
                                                 Dims d) {
  for (int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; index < n;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t x = index % d.Wf;
    int64_t t = index / d.Wf;
    const int64_t y = t % d.Hf;
    t /= d.Hf;
    const int64_t c = t % d.C;
    const int64_t b = t / d.C;

    acc_t xf, yf;
    sample_position<scalar_t, acc_t>(fl, fs, b, y, x, xf, yf);
    const acc_t a = sub_rn(xf, resample2d_int_as(xf));
    const acc_t bb = sub_rn(yf, resample2d_int_as(yf));
    int64_t off[4];
    corner_offsets(floor_(xf), floor_(yf), d.H, d.W, is, off);
    const acc_t one_a = sub_rn(acc_t(1), a);
    const acc_t one_b = sub_rn(acc_t(1), bb);
    const acc_t g = static_cast<acc_t>(go[b * gs.b + c * gs.c + y * gs.h + x * gs.w]);
    acc_t* plane = gi + b * is.b + c * is.c;
    atomicAdd(plane + off[0], mul_rn(mul_rn(one_a, one_b), g));
    atomicAdd(plane + off[1], mul_rn(mul_rn(a, one_b), g));
    atomicAdd(plane + off[2], mul_rn(mul_rn(one_a, bb), g));
    atomicAdd(plane + off[3], mul_rn(mul_rn(a, bb), g));
  }
}

// ---------------------------------------------------------------------------------------------
// grad_flow: one thread per flow pixel (b, y, x), both components, channels in order.

template <typename scalar_t>
__global__ void resample2d_backward_flow_kernel(int64_t n, const scalar_t* __restrict__ go,
                                                Strides4 gs, const scalar_t* __restrict__ in,
                                                Strides4 is, const scalar_t* __restrict__ fl,
                                                Strides4 fs, scalar_t* __restrict__ gf,
                                                Strides4 gfs, Dims d) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; index < n;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t x = index % d.Wf;
    const int64_t t = index / d.Wf;
    const int64_t y = t % d.Hf;
    const int64_t b = t / d.Hf;

    acc_t xf, yf;
    sample_position<scalar_t, acc_t>(fl, fs, b, y, x, xf, yf);
    const acc_t fx = floor_(xf);
    const acc_t fy = floor_(yf);
    int64_t off[4];
    corner_offsets(fx, fy, d.H, d.W, is, off);
    const acc_t gamma_u = sub_rn(acc_t(1), sub_rn(yf, fy));
    const acc_t gamma_v = sub_rn(acc_t(1), sub_rn(xf, fx));
    const acc_t rest_u = sub_rn(acc_t(1), gamma_u);
    const acc_t rest_v = sub_rn(acc_t(1), gamma_v);
    const scalar_t* inb = in + b * is.b;
    const scalar_t* gob = go + b * gs.b + y * gs.h + x * gs.w;
    acc_t acc_u = acc_t(0);
    acc_t acc_v = acc_t(0);
    for (int64_t c = 0; c < d.C; ++c) {
      const scalar_t* plane = inb + c * is.c;
      const acc_t g = static_cast<acc_t>(gob[c * gs.c]);
      const acc_t i_tl = static_cast<acc_t>(plane[off[0]]);
      const acc_t i_tr = static_cast<acc_t>(plane[off[1]]);
      const acc_t i_bl = static_cast<acc_t>(plane[off[2]]);
      const acc_t i_br = static_cast<acc_t>(plane[off[3]]);
      const acc_t pu = mul_rn(gamma_u, g);
      const acc_t qu = mul_rn(rest_u, g);
      acc_u = fma_rn(pu, i_tr, acc_u);
      acc_u = fma_rn(-pu, i_tl, acc_u);
      acc_u = fma_rn(qu, i_br, acc_u);
      acc_u = fma_rn(-qu, i_bl, acc_u);
      const acc_t pv = mul_rn(gamma_v, g);
      const acc_t qv = mul_rn(rest_v, g);
      acc_v = fma_rn(pv, i_bl, acc_v);
      acc_v = fma_rn(-pv, i_tl, acc_v);
      acc_v = fma_rn(qv, i_br, acc_v);
      acc_v = fma_rn(-qv, i_tr, acc_v);
    }
    scalar_t* o = gf + b * gfs.b + y * gfs.h + x * gfs.w;
    o[0] = static_cast<scalar_t>(acc_u);
    o[gfs.c] = static_cast<scalar_t>(acc_v);
  }
}

// ---------------------------------------------------------------------------------------------
// Host side

void check_cuda_args(const char* op, const at::Tensor& input) {
  TORCH_CHECK(input.is_cuda(), op, ": the CUDA kernel got a tensor on ", input.device());
  const auto st = input.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op,
              ": the CUDA kernel supports float32, float64, float16 and bfloat16, got ", st);
}

at::Tensor resample2d_cuda(const at::Tensor& input, const at::Tensor& flow) {
  const char* op = "evss::resample2d";
  check_resample2d_args(op, input, flow);
  check_cuda_args(op, input);
  const c10::cuda::CUDAGuard guard(input.device());
  auto out = at::empty({flow.size(0), input.size(1), flow.size(2), flow.size(3)},
                       input.options().memory_format(resample2d_layout(input)));
  const int64_t n = out.numel();
  if (n == 0) return out;
  const Dims d = dims_of(input, flow);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "evss::resample2d_cuda", [&] {
    resample2d_forward_kernel<scalar_t><<<num_blocks(n, kThreads), kThreads, 0, stream>>>(
        n, input.const_data_ptr<scalar_t>(), strides_of(input), flow.const_data_ptr<scalar_t>(),
        strides_of(flow), out.mutable_data_ptr<scalar_t>(), strides_of(out), d);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor resample2d_backward_input_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                          const at::Tensor& flow) {
  const char* op = "evss::resample2d_backward_input";
  check_resample2d_args(op, input, flow);
  check_cuda_args(op, input);
  check_resample2d_grad_output(op, grad_output, input, flow);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto layout = resample2d_layout(input);
  const bool reduced = input.scalar_type() == at::kHalf || input.scalar_type() == at::kBFloat16;
  // float32 accumulation buffer for half/bfloat16 (atomics on 16-bit types are slow and lossy).
  auto grad_input = at::zeros(input.sizes(), input.options()
                                                  .dtype(reduced ? at::kFloat : input.scalar_type())
                                                  .memory_format(layout));
  const int64_t n = grad_output.numel();
  if (n > 0 && grad_input.numel() > 0) {
    const Dims d = dims_of(input, flow);
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                    "evss::resample2d_backward_input_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      resample2d_backward_input_kernel<scalar_t, acc_t><<<num_blocks(n, kThreads), kThreads, 0, stream>>>(
          n, grad_output.const_data_ptr<scalar_t>(), strides_of(grad_output),
          flow.const_data_ptr<scalar_t>(), strides_of(flow), grad_input.mutable_data_ptr<acc_t>(),
          strides_of(grad_input), d);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  if (reduced) {
    grad_input = grad_input.to(input.scalar_type());  // keeps the layout
  }
  return grad_input;
}

at::Tensor resample2d_backward_flow_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                         const at::Tensor& flow) {
  const char* op = "evss::resample2d_backward_flow";
  check_resample2d_args(op, input, flow);
  check_cuda_args(op, input);
  check_resample2d_grad_output(op, grad_output, input, flow);
  const c10::cuda::CUDAGuard guard(input.device());
  auto grad_flow = at::empty(flow.sizes(), flow.options().memory_format(resample2d_layout(flow)));
  const int64_t n = flow.size(0) * flow.size(2) * flow.size(3);
  if (n == 0) return grad_flow;
  if (input.size(1) == 0) return grad_flow.zero_();
  const Dims d = dims_of(input, flow);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "evss::resample2d_backward_flow_cuda", [&] {
    resample2d_backward_flow_kernel<scalar_t><<<num_blocks(n, kThreads), kThreads, 0, stream>>>(
        n, grad_output.const_data_ptr<scalar_t>(), strides_of(grad_output),
        input.const_data_ptr<scalar_t>(), strides_of(input), flow.const_data_ptr<scalar_t>(),
        strides_of(flow), grad_flow.mutable_data_ptr<scalar_t>(), strides_of(grad_flow), d);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_flow;
}

}  // namespace

TORCH_LIBRARY_IMPL(evss, CUDA, m) {
  m.impl("resample2d", &resample2d_cuda);
  m.impl("resample2d_backward_input", &resample2d_backward_input_cuda);
  m.impl("resample2d_backward_flow", &resample2d_backward_flow_cuda);
}

}  // namespace evss
