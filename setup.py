"""Build and install the `evss` package and its C++/CUDA extension `model._C`.

    pip install --no-build-isolation -e .

(`--no-build-isolation` builds against the torch already installed; an isolated build would fetch
another torch.)

The extension holds the `evss::resample2d` warp operator (csrc/).  What gets built:

* CPU kernels always (float32/float64, OpenMP-parallel when torch uses OpenMP).
* CUDA kernels as well when a CUDA toolkit (nvcc) and a CUDA build of torch are found.
  Environment variables:

  ``FORCE_CUDA``
      ``1``: build the CUDA kernels or fail (e.g. on a machine without a GPU); ``0``: CPU only,
      even where CUDA is available; unset: automatic.
  ``CUDA_HOME`` (or ``CUDA_PATH``)
      the CUDA toolkit.  When unset it is derived from ``nvcc`` on ``PATH`` (``nvcc`` may be a
      wrapper script; the toolkit root is asked from nvcc itself).
  ``TORCH_CUDA_ARCH_LIST``
      GPU architectures, e.g. ``"8.0"`` or ``"8.6;9.0+PTX"``.  When unset, the architectures of the
      visible GPUs are used; with no GPU visible the default is ``7.5+PTX`` (machine code for
      sm_75 plus PTX that the driver compiles for any newer GPU on first use).
  ``MAX_JOBS``
      parallel compile jobs (ninja).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
DEFAULT_ARCH_LIST = "7.5+PTX"


def _log(msg):
    print(f"[evss setup] {msg}", file=sys.stderr)


def _cuda_home_from_nvcc():
    """The CUDA toolkit root of the `nvcc` on PATH, or None."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    candidates = []
    # nvcc prints its own toolkit root ("#$ TOP=...") in a dry run; this also works when the nvcc
    # on PATH is a wrapper script or a symlink farm.
    try:
        res = subprocess.run(
            [nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
            capture_output=True, text=True, timeout=120,
        )
        m = re.search(r"^#\$ TOP=(.+)$", res.stdout + res.stderr, re.MULTILINE)
        if m:
            candidates.append(Path(m.group(1).strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    candidates.append(Path(os.path.realpath(nvcc)).parent.parent)
    for cand in candidates:
        cand = Path(os.path.realpath(cand))
        if (cand / "include" / "cuda_runtime.h").is_file():
            return str(cand)
    return None


def _find_cuda_home():
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    return _cuda_home_from_nvcc()


def _packages():
    # The four top-level packages; some may still be plain folders without __init__.py, which
    # find_namespace_packages accepts as well.
    names = ("model", "dataset", "engine", "tools")
    include = [p for n in names for p in (n, f"{n}.*")]
    return find_namespace_packages(
        where=str(ROOT), include=include, exclude=["*.__pycache__", "*.__pycache__.*"]
    )


def _extensions():
    force_cuda = os.environ.get("FORCE_CUDA", "").strip()
    if force_cuda not in ("", "0", "1"):
        raise SystemExit(f"FORCE_CUDA must be 0, 1 or unset, got {force_cuda!r}")

    cuda_home = None
    if force_cuda != "0":
        cuda_home = _find_cuda_home()
        if cuda_home and not os.environ.get("CUDA_HOME"):
            # torch.utils.cpp_extension reads CUDA_HOME when it is imported (below).
            os.environ["CUDA_HOME"] = cuda_home

    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    torch_has_cuda = torch.version.cuda is not None
    if force_cuda == "0":
        with_cuda = False
        reason = "FORCE_CUDA=0"
    elif force_cuda == "1":
        if not torch_has_cuda:
            raise SystemExit("FORCE_CUDA=1 but the installed torch is not a CUDA build "
                             f"(torch {torch.__version__})")
        if cuda_home is None:
            raise SystemExit("FORCE_CUDA=1 but no CUDA toolkit was found: put nvcc on PATH or set CUDA_HOME")
        with_cuda = True
        reason = "FORCE_CUDA=1"
    else:
        with_cuda = torch_has_cuda and cuda_home is not None
        reason = (f"torch CUDA build: {torch_has_cuda}, CUDA toolkit: {cuda_home or 'not found'}")

    cxx_flags = ["-O3", "-ffp-contract=off"]  # the CPU kernels need exact, uncontracted float arithmetic
    link_flags = []
    if getattr(torch._C, "has_openmp", False):
        cxx_flags.append("-fopenmp")  # at::parallel_for is only parallel when compiled with OpenMP
        link_flags.append("-fopenmp")
    sources = [str(p.relative_to(ROOT)) for p in sorted(CSRC.glob("*.cpp"))]
    sources += [str(p.relative_to(ROOT)) for p in sorted((CSRC / "cpu").glob("*.cpp"))]

    if with_cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            if torch.cuda.is_available():
                _log("TORCH_CUDA_ARCH_LIST unset: building for the visible GPUs")
            else:
                os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
                _log(f"TORCH_CUDA_ARCH_LIST unset and no GPU visible: using {DEFAULT_ARCH_LIST}")
        sources += [str(p.relative_to(ROOT)) for p in sorted((CSRC / "cuda").glob("*.cu"))]
        ext = CUDAExtension(
            "model._C",
            sources,
            include_dirs=[str(CSRC)],
            define_macros=[("EVSS_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3"]},
            extra_link_args=link_flags,
        )
    else:
        ext = CppExtension(
            "model._C",
            sources,
            include_dirs=[str(CSRC)],
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    _log(f"building model._C with CUDA kernels: {with_cuda} ({reason}); "
         f"TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST', '')!r}")
    return [ext], {"build_ext": BuildExtension}


ext_modules, cmdclass = _extensions()

setup(
    name="evss",
    version="0.1.0",
    description="EVSS video semantic segmentation (keyframe CSRNet + FlowNet warp + CoNet correction)",
    python_requires=">=3.9",
    packages=_packages(),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
