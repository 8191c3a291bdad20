#!/usr/bin/env bash
# The prepared run for a GPU device machine (issue 7, target 6), one call for everything:
#   1. the GPU tests (pytest -m gpu: every op, Grad-CAM and the seed fixtures on CuPy; no host/device
#      copy inside the graph), at most 4 minutes;
#   2. the GPU benchmark (benchmarks/gpu.py: a batch of 32 ResNet-18 Grad-CAMs, CuPy against PyTorch
#      CUDA eager, float32 and float64, after a float64 agreement guard), at most 5 minutes.
#
#   bash benchmarks/device.sh [OUTDIR]      # OUTDIR: $OUT when set (the device tool), else benchmarks/results
#
# Needs numpy, h5py, pytest, CuPy and PyTorch with CUDA; refcam runs from this checkout (no install,
# no scipy needed). Writes device.txt, gpu-tests.txt, gpu-bench.txt and gpu.json to OUTDIR and exits
# non-zero when the tests or the benchmark fail.
set -u
out="${1:-${OUT:-benchmarks/results}}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python -c "import cupy, numpy, torch; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'torch', torch.__version__)"
} > "$out/device.txt" 2>&1
timeout 240 python -m pytest -m gpu -q -p no:cacheprovider > "$out/gpu-tests.txt" 2>&1
tests=$?
timeout 300 python benchmarks/gpu.py --json "$out/gpu.json" > "$out/gpu-bench.txt" 2>&1
bench=$?
cat "$out/device.txt"
tail -n 30 "$out/gpu-tests.txt"
tail -n 30 "$out/gpu-bench.txt"
echo "device.sh: gpu tests exit $tests, gpu benchmark exit $bench (outputs in $out)"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
