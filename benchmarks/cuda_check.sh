#!/usr/bin/env bash
# The GPU check (issue 6): on a machine with an NVIDIA GPU, nvcc and this project installed
# (no network needed), build, verify, time, tune briefly and time again MobileNet v1 1.0-224 at
# batch 1 and 32 against PyTorch + cuDNN, within 10 minutes; writes one JSON file.
#   bash benchmarks/cuda_check.sh [OUT.json]   (default benchmarks/results/cuda_check.json)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results/cuda_check.json}"
python=".venv/bin/python"
[ -x "$python" ] || python="python3"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader || { echo "no NVIDIA GPU (nvidia-smi failed)" >&2; exit 1; }
command -v nvcc >/dev/null || { echo "nvcc is not on PATH: the CUDA kernels are compiled with it" >&2; exit 1; }
exec timeout 600 "$python" benchmarks/cuda_check.py --out "$out"
