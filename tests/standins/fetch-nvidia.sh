#!/bin/sh
# Fetches NVIDIA's real CUDA runtime and NCCL from PyPI's wheels (nvidia-cuda-runtime-cu12:
# libcudart.so.12; nvidia-nccl-cu12: libnccl.so.2, with their headers), for the cuda and
# nccl packs' tests. Without a GPU (or its driver) their calls fail, and their probes fire.
# Usage: tests/standins/fetch-nvidia.sh     (prints the folder holding nvidia/*/lib and include)
#   BTHOST_NVIDIA_DIR  where to unpack (default /var/cache/bthost/nvidia)
# Idempotent: when both libraries are unpacked it only prints the folder.
set -eu

DEST=${BTHOST_NVIDIA_DIR:-/var/cache/bthost/nvidia}
CUDART="$DEST/x/nvidia/cuda_runtime/lib/libcudart.so.12"
NCCL="$DEST/x/nvidia/nccl/lib/libnccl.so.2"
# Tests run in parallel: one fetches, the others wait for it.
mkdir -p "$DEST"
exec 9>"$DEST/.lock"
flock 9
if [ -e "$CUDART" ] && [ -e "$NCCL" ]; then
    echo "$DEST/x"
    exit 0
fi
# CUDA 12's runtime and the NCCL built for it; pinned so the tests' expectations hold.
python3 -m pip download --quiet --no-deps --dest "$DEST" \
    "nvidia-cuda-runtime-cu12==12.9.79" "nvidia-nccl-cu12==2.32.3" >&2
rm -rf "$DEST/x.tmp"
mkdir -p "$DEST/x.tmp"
for w in "$DEST"/nvidia_cuda_runtime_cu12-12.9.79-*.whl "$DEST"/nvidia_nccl_cu12-2.32.3-*.whl; do
    python3 -m zipfile -e "$w" "$DEST/x.tmp"
done
rm -rf "$DEST/x"
mv "$DEST/x.tmp" "$DEST/x"
echo "$DEST/x"
