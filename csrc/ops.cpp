// Operator schemas of the `evss` library and the Python module stub.
//
// The schemas are declared here, once.  Kernels live elsewhere and register themselves with
// TORCH_LIBRARY_IMPL for their dispatch key:
//   csrc/cpu/resample2d_cpu.cpp   -> CPU  (float32, float64)
//   csrc/cuda/resample2d_cuda.cu  -> CUDA (float32, float64, float16, bfloat16); only compiled when
//                                    setup.py builds with CUDA (it then defines EVSS_WITH_CUDA).
// Autograd and fake (meta) kernels are registered from Python when the package is imported
// (torch.library.register_autograd / register_fake in model/warp.py, model/fusion.py).  No
// m.set_python_module here: it would name ONE module for every op defined after it, and PyTorch
// rejects fake kernels registered from any other module.
//
// Building the shared object as the Python extension module `model._C` lets users write
// `import model._C` (or `from model import _C`) to load the library; importing it runs the static
// registrations below.  The module itself exposes nothing: everything is under torch.ops.evss.*.

#include <Python.h>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "resample2d.h"

namespace evss {

void check_resample2d_args(const char* op, const at::Tensor& input, const at::Tensor& flow) {
  TORCH_CHECK(input.dim() == 4, op, ": input must be 4-D (B, C, H, W), got shape ", input.sizes());
  TORCH_CHECK(flow.dim() == 4 && flow.size(1) == 2, op,
              ": flow must be 4-D (B, 2, H, W) with channels (dx, dy), got shape ", flow.sizes());
  TORCH_CHECK(input.size(0) == flow.size(0), op,
              ": input and flow must have the same batch size, got input ", input.sizes(),
              " and flow ", flow.sizes());
  TORCH_CHECK(input.device() == flow.device(), op,
              ": input and flow must be on the same device, got ", input.device(), " and ",
              flow.device());
  TORCH_CHECK(input.scalar_type() == flow.scalar_type(), op,
              ": input and flow must have the same dtype, got ", input.scalar_type(), " and ",
              flow.scalar_type());
  const bool empty_output =
      flow.size(0) == 0 || input.size(1) == 0 || flow.size(2) == 0 || flow.size(3) == 0;
  TORCH_CHECK(empty_output || (input.size(2) > 0 && input.size(3) > 0), op,
              ": input must have a non-empty image (H > 0 and W > 0) to sample from, got shape ",
              input.sizes());
}

void check_resample2d_grad_output(const char* op, const at::Tensor& grad_output,
                                  const at::Tensor& input, const at::Tensor& flow) {
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == flow.size(0) &&
                  grad_output.size(1) == input.size(1) && grad_output.size(2) == flow.size(2) &&
                  grad_output.size(3) == flow.size(3),
              op, ": grad_output must have the output's shape (B, C, Hf, Wf) = (", flow.size(0),
              ", ", input.size(1), ", ", flow.size(2), ", ", flow.size(3), "), got ",
              grad_output.sizes());
  TORCH_CHECK(grad_output.device() == input.device(), op,
              ": grad_output must be on the input's device, got ", grad_output.device(), " and ",
              input.device());
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type(), op,
              ": grad_output must have the input's dtype, got ", grad_output.scalar_type(), " and ",
              input.scalar_type());
}

at::MemoryFormat resample2d_layout(const at::Tensor& t) {
  if (t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    return at::MemoryFormat::ChannelsLast;
  }
  return at::MemoryFormat::Contiguous;
}

// True when this build contains the CUDA kernels.
static bool cuda_compiled() {
#ifdef EVSS_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace evss

TORCH_LIBRARY(evss, m) {
  // output[b, c, y, x] = bilinear sample of input[b, c] at (x + flow[b, 0, y, x], y + flow[b, 1, y, x]),
  // corner indices clamped to the image (flownet2 Resample2d, kernel_size 1).
  // input (B, C, H, W), flow (B, 2, Hf, Wf) -> output (B, C, Hf, Wf).
  m.def("resample2d(Tensor input, Tensor flow) -> Tensor");
  // Gradient w.r.t. `input`: (B, C, H, W), the shape of `input`.
  m.def("resample2d_backward_input(Tensor grad_output, Tensor input, Tensor flow) -> Tensor");
  // Gradient w.r.t. `flow`: (B, 2, Hf, Wf), the shape of `flow`.
  m.def("resample2d_backward_flow(Tensor grad_output, Tensor input, Tensor flow) -> Tensor");
  // Fused x4 upsample-softmax-blend-argmax of the rectification step, prediction only (csrc/fusion.h;
  // kernels in csrc/cpu/fusion_cpu.cpp and csrc/cuda/fusion_cuda.cu, fake kernels in model/fusion.py):
  // (B, C, h, w), (B, C, h, w), (B, 2, h, w), (B, 1, h, w) -> int64 (B, out_h, out_w).
  m.def("fused_merge_argmax(Tensor warped_q, Tensor update_q, Tensor edge_q, Tensor dm_coarse_q, float wf, "
        "int out_h, int out_w) -> Tensor");
  // argmax over classes of bilinear x4 upsampled logits (B, C, h, w) -> int64 (B, out_h, out_w).
  m.def("upsample_argmax(Tensor logits_q, int out_h, int out_w) -> Tensor");
  // 3x3 convolution, stride 1, padding 1, by Winograd F(4x4, 3x3) or F(6x6, 3x3) (csrc/cpu/winograd_cpu.cpp;
  // CPU only, model/winograd.py uses F.conv2d elsewhere): input (B, C, H, W) float32/bfloat16,
  // weight_winograd (36 or 64 points, C, K) float32/bfloat16 = G g G^T of the (K, C, 3, 3) filter (its
  // points name the form, its dtype the matrix products' precision), bias (K) -> (B, K, H, W)
  // channels_last.  space_to_depth = s convolves the input's space-to-depth rearrangement (phase-major
  // channels, weight (points, s*s*C, K)) -> (B, K, ceil(H/s), ceil(W/s)).
  m.def("winograd_conv3x3(Tensor input, Tensor weight_winograd, Tensor? bias, int space_to_depth=1) -> Tensor");
  // Build information: whether the CUDA kernels were compiled into this library.
  m.def("_cuda_compiled() -> bool", &evss::cuda_compiled);
}

// Python extension module stub: `import model._C` loads this library (and so the registrations).
static struct PyModuleDef evss_c_module = {
    PyModuleDef_HEAD_INIT,
    "_C",
    "EVSS C++/CUDA operators; use them through torch.ops.evss (see model/warp.py).",
    -1,
    nullptr,
};

PyMODINIT_FUNC PyInit__C(void) {
  return PyModule_Create(&evss_c_module);
}
