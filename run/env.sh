# Sourced by the run/*.sh scripts: create .venv when missing, install the requirements and build the
# extension once (again when csrc/ or setup.py change), then activate it.
# Environment: PYTHON (interpreter for the venv, default python3), TORCH_CUDA_ARCH_LIST (unset: the
# visible GPUs' architectures, or 7.5+PTX without a GPU; see setup.py; part of the build stamp, so a
# build for another GPU is redone), FORCE_CUDA (0: CPU only; 1: require CUDA). THP_MEM_ALLOC_ENABLE=1 (opt-in) backs
# torch's CPU tensors of 2 MB and more with transparent huge pages: it cut the exact EVSS step at
# 1024x2048 by ~10 % when timed alone, but made interleaved runs beside the original's large tensors
# erratic (page compaction), so it stays off unless set.
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[env] creating $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
source "$VENV/bin/activate"
stamp="$VENV/.evss-installed"
sources_hash=$( (cat requirements.txt setup.py csrc/*.cpp csrc/*.h csrc/*/* 2>/dev/null; echo "arch=${TORCH_CUDA_ARCH_LIST:-}") \
  | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sources_hash" ]; then
  echo "[env] installing requirements"
  python -m pip install -q -r requirements.txt
  echo "[env] building the extension (TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-unset, see setup.py})"
  start=$(date +%s)
  python -m pip install -q --no-build-isolation --no-deps -e .
  echo "[env] extension built in $(( $(date +%s) - start )) s"
  echo "$sources_hash" > "$stamp"
fi
