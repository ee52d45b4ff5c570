#!/usr/bin/env bash
# The GPU check: build llama-cpp-python for CUDA from a carried source tree, run the GPU tests and a short
# benchmark, offline, in about 12 minutes on a 16-core machine (build included). See docs/gpu.md.
#
#   bash scripts/gpu-check.sh --prepare      # on a networked machine, with .venv set up (scripts/setup.sh):
#                                            # a trimmed llama-cpp-python source tree (<= 40 MB) and the wheels
#                                            # the GPU machine lacks, in ${GPU_CHECK_DIR:-.gpu-check} (git-ignored)
#   bash scripts/gpu-check.sh                # on the GPU machine (nvidia-smi, nvcc, CMake, Python 3 there; no
#                                            # network): build, install in a venv made there, test, benchmark
#   bash scripts/gpu-check.sh --cpu-dry-run  # the same steps with a CPU build (tests the script on any machine)
#
# Results: $GPU_CHECK_OUT (default: the check folder): gpu-check.json (benchmarks/gpu.py), gpu-check.log, and
# a timing line per step. Exit status: 0 all passed; 2 no GPU / no CUDA compiler; 3 nothing prepared; 1 a step failed.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DIR=${GPU_CHECK_DIR:-.gpu-check}
OUT=${GPU_CHECK_OUT:-$DIR}
CACHE=${GPU_CHECK_CACHE:-$HOME/.cache/lmsext-gpu-check}
MAX_TREE_MB=40
CARRY_MAX_MB=56  # what travels to the GPU machine is 64 MiB in all, the repository (~3 MB) included
#: the largest wheels, of packages the device machine's CUDA image has (/work/.library/device/KINDS.md: numpy 2.5,
#: hf-xet); left out only when the tree and the wheels would not travel otherwise
GPU_IMAGE_HAS=(numpy hf_xet)
MODE=gpu
case "${1:-}" in
  --prepare) MODE=prepare ;;
  --cpu-dry-run) MODE=cpu ;;
  "") ;;
  -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
  *) echo "gpu-check: unknown option $1 (use --prepare, --cpu-dry-run or nothing)" >&2; exit 1 ;;
esac
mkdir -p "$DIR" "$OUT"
LOG=$OUT/gpu-check.log
T0=$(date +%s)
TIMES=()
step() {  # step NAME COMMAND...: run, log, time
  local name=$1; shift
  local t=$(date +%s)
  echo "== $name" | tee -a "$LOG"
  if ! "$@" >>"$LOG" 2>&1; then
    echo "gpu-check: step '$name' failed after $(( $(date +%s) - t )) s; the end of $LOG:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
  TIMES+=("$name $(( $(date +%s) - t )) s")
  echo "   $name: $(( $(date +%s) - t )) s" | tee -a "$LOG"
}
where_time_went() {
  echo "where the time went (total $(( $(date +%s) - T0 )) s): ${TIMES[*]/%/;}" | tee -a "$LOG"
}

# ------------------------------------------------------------------------------ --prepare (networked machine)

TRIM=(  # what a CUDA build of the Python package does not need
  .git docs examples tests docker scripts .github vendor/llama.cpp/.git
  vendor/llama.cpp/models vendor/llama.cpp/docs vendor/llama.cpp/examples vendor/llama.cpp/tests
  vendor/llama.cpp/media vendor/llama.cpp/benches vendor/llama.cpp/pocs vendor/llama.cpp/tools
  vendor/llama.cpp/gguf-py vendor/llama.cpp/scripts vendor/llama.cpp/conversion vendor/llama.cpp/grammars
  vendor/llama.cpp/requirements vendor/llama.cpp/skills vendor/llama.cpp/.github vendor/llama.cpp/.devops
  vendor/llama.cpp/app vendor/llama.cpp/prompts
)
OTHER_BACKENDS=(ggml-vulkan ggml-sycl ggml-metal ggml-opencl ggml-cann ggml-musa ggml-kompute ggml-webgpu
  ggml-hexagon ggml-openvino ggml-et ggml-virtgpu ggml-zdnn ggml-hip ggml-rpc ggml-blas ggml-zendnn ggml-cuda-hip)

trim_tree() {  # trim_tree SRC: drop what TRIM and OTHER_BACKENDS name (ggml-cuda stays; ggml-hip builds from it)
  local src=$1
  for p in "${TRIM[@]}"; do rm -rf "${src:?}/$p"; done || return 1
  for b in "${OTHER_BACKENDS[@]}"; do
    [ "$b" = ggml-hip ] || [ "$b" = ggml-musa ] && continue  # their CMake files are tiny; keep for CMake's sake
    rm -rf "$src/vendor/llama.cpp/ggml/src/$b"
  done
  find "$src" -name '*.gguf' -delete
}

prepare_tree() {
  local ver
  ver=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
  mkdir -p "$CACHE"
  local sdist=$CACHE/llama_cpp_python-$ver.tar.gz
  if [ ! -f "$sdist" ]; then
    .venv/bin/python -m pip download --quiet --no-binary :all: --no-deps "llama-cpp-python==$ver" -d "$CACHE" || return 1
  fi
  rm -rf "$DIR/llama-cpp-python" "$DIR/.unpack"
  mkdir -p "$DIR/.unpack"
  tar xzf "$sdist" -C "$DIR/.unpack" || return 1
  mv "$DIR/.unpack/llama_cpp_python-$ver" "$DIR/llama-cpp-python" || return 1
  rm -rf "$DIR/.unpack"
  trim_tree "$DIR/llama-cpp-python"
  local mb
  mb=$(du -sm "$DIR/llama-cpp-python" | cut -f1)
  echo "trimmed llama-cpp-python $ver source tree: ${mb} MB (sdist $(du -sm "$sdist" | cut -f1) MB)"
  if [ "$mb" -gt "$MAX_TREE_MB" ]; then
    echo "gpu-check: the trimmed tree is ${mb} MB, over ${MAX_TREE_MB} MB" >&2
    return 1
  fi
}

requirements() {  # lmsext's runtime dependencies (not llama-cpp-python: built here) + what the check runs
  .venv/bin/python - <<'EOF'
import tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print("\n".join(d for d in deps if not d.startswith("llama-cpp-python")))
print("pytest>=8,<10\nscikit-build-core>=0.9\ndiskcache>=5.6.1\ntyping-extensions>=4.5.0\nsetuptools")
EOF
}

prepare_wheels() {  # wheels for the GPU machine's Python (3.12, x86-64 Linux) and, for --cpu-dry-run, this one's
  rm -rf "$DIR/wheels" && mkdir -p "$DIR/wheels"
  requirements >"$DIR/requirements.txt" || return 1
  local plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
              --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform linux_x86_64)
  .venv/bin/python -m pip download --quiet --only-binary=:all: --python-version "${GPU_PYTHON_VERSION:-3.12}" \
    --implementation cp "${plat[@]}" -d "$DIR/wheels" -r "$DIR/requirements.txt" || return 1
  echo "wheels: $(ls "$DIR/wheels" | wc -l) files, $(du -sm "$DIR/wheels" | cut -f1) MB"
  local total
  total=$(du -smc "$DIR/llama-cpp-python" "$DIR/wheels" | tail -1 | cut -f1)
  if [ "$total" -gt "$CARRY_MAX_MB" ]; then  # over what may travel: leave out what the GPU image already has
    local pkg
    for pkg in "${GPU_IMAGE_HAS[@]}"; do rm -f "$DIR/wheels/${pkg}"-[0-9]*.whl; done
    echo "tree + wheels ${total} MB > ${CARRY_MAX_MB} MB: left out the wheels of packages the CUDA image has" \
         "(${GPU_IMAGE_HAS[*]}); now $(du -sm "$DIR/wheels" | cut -f1) MB. A GPU machine without them needs its own pip cache."
  fi
}

if [ "$MODE" = prepare ]; then
  [ -x .venv/bin/python ] || { echo "gpu-check --prepare: run bash scripts/setup.sh first" >&2; exit 1; }
  : >"$LOG"
  step "source tree" prepare_tree
  step "wheels" prepare_wheels
  total=$(du -smc "$DIR/llama-cpp-python" "$DIR/wheels" | tail -1 | cut -f1)
  echo "carried: $DIR/llama-cpp-python $(du -sm "$DIR/llama-cpp-python" | cut -f1) MB + $DIR/wheels" \
       "$(du -sm "$DIR/wheels" | cut -f1) MB = ${total} MB (the repository travels too; 64 MiB in all)" | tee -a "$LOG"
  where_time_went
  exit 0
fi

# ------------------------------------------------------------------------------ the check (GPU machine)

[ -d "$DIR/llama-cpp-python" ] || { echo "gpu-check: no source tree in $DIR: run bash scripts/gpu-check.sh --prepare on a networked machine first" >&2; exit 3; }
: >"$LOG"
JOBS=$(nproc)
if [ "$MODE" = gpu ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu-check: no NVIDIA GPU here (nvidia-smi is missing or lists none); --cpu-dry-run tests the script on a CPU" | tee -a "$LOG" >&2
    exit 2
  fi
  if ! command -v nvcc >/dev/null 2>&1; then
    echo "gpu-check: no CUDA compiler here (nvcc is not on PATH); install CUDA's toolkit or add its bin/ to PATH" | tee -a "$LOG" >&2
    exit 2
  fi
  CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d ' .')
  nvidia-smi -L | tee -a "$LOG"
  CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$CAP -DGGML_NATIVE=on"
  BENCH=(--layers 16 --reps 3 --tokens 64)  # ratio 0 decodes on the CPU: the slowest part
else
  CMAKE_ARGS="-DGGML_NATIVE=on"
  BENCH=(--layers 1 --reps 1 --tokens 16 --prompt 128)
fi
CMAKE_ARGS="$CMAKE_ARGS -DLLAVA_BUILD=off -DLLAMA_BUILD_TESTS=off -DLLAMA_BUILD_TOOLS=off -DLLAMA_BUILD_EXAMPLES=off -DLLAMA_BUILD_SERVER=off"
# lmsext itself runs from this checkout (no install: the venv's setuptools may predate pyproject's license field)
export CMAKE_ARGS CMAKE_BUILD_PARALLEL_LEVEL=$JOBS PIP_NO_INDEX=1 PIP_FIND_LINKS=$REPO/$DIR/wheels PYTHONPATH=$REPO
echo "CMAKE_ARGS=$CMAKE_ARGS (-j$JOBS)" | tee -a "$LOG"

VENV=$DIR/venv
make_venv() {  # (each command ends in "|| return 1": errexit does not apply inside a function run by step's "if")
  rm -rf "$VENV"
  # the base Python's packages (on the GPU machine: CMake, ninja, scikit-build-core, numpy, …; in the dry run:
  # .venv's lmsext dependencies) stay visible through a .pth — that Python may itself be a venv, whose packages
  # --system-site-packages alone would not show
  local base=python3
  [ "$MODE" = cpu ] && base=.venv/bin/python
  "$base" -m venv --system-site-packages "$VENV" || return 1
  "$base" -c 'import site; print("\n".join(site.getsitepackages()))' \
    >"$("$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')/lmsext-gpu-check-base.pth" || return 1
  "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation scikit-build-core pathspec || true
  if [ "$MODE" = gpu ]; then  # the dry run's Python already has them (.venv), and the wheels are for 3.12
    "$VENV/bin/python" -m pip install --quiet -r "$DIR/requirements.txt" || return 1
  fi
}
build_llama() {
  "$VENV/bin/python" -m pip install --no-deps --no-build-isolation --force-reinstall --no-cache-dir \
    "./$DIR/llama-cpp-python" || return 1
  "$VENV/bin/python" -c 'import llama_cpp, lmsext.engine.devices as d; print("llama-cpp-python", llama_cpp.__version__, "GPU offload:", bool(llama_cpp.llama_supports_gpu_offload()), "GPUs:", [g.description for g in d.gpu_devices()])'
}
run_tests() {
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_engine_load.py
}
run_bench() {
  PYTHONUNBUFFERED=1 "$VENV/bin/python" -m benchmarks.gpu "${BENCH[@]}" --out "$OUT/gpu-check.json"
}
step "venv" make_venv
step "build llama-cpp-python" build_llama
step "tests" run_tests
step "benchmark" run_bench
cat "$LOG" | sed -n '/^| gpu ratio/,/^wrote/p'
where_time_went
