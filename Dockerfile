# One image for every recycle process (api, proposer, worker); the command picks which.
#
# CPU (default):
#   docker build -t recycle:0.1.0-cpu .
# CUDA:
#   docker build -t recycle:0.1.0-cuda --build-arg TORCH_INDEX_URL=https://pypi.org/simple .
#
# Why no nvidia/cuda base image: torch's CUDA wheels bundle the CUDA runtime,
# cuBLAS, cuDNN and NCCL as pip packages, so the image needs only Python; the host
# driver is injected at run time by the NVIDIA container toolkit (compose's GPU
# reservation). The project needs Python 3.11 exactly, which the Ubuntu-based CUDA
# images do not ship. The CPU and CUDA variants therefore differ only in where torch
# comes from:
#   - CPU:  https://download.pytorch.org/whl/cpu  -> torch 2.13.0+cpu (~200 MB, no CUDA)
#   - CUDA: https://pypi.org/simple               -> torch 2.13.0 built for CUDA 13.0
#           (host driver >= 580). For an older driver point TORCH_INDEX_URL at one of
#           PyTorch's cu12x indexes that carries this torch version.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RECYCLE_DATA_DIR=/data \
    RECYCLE_POOL_CACHE_DIR=/data/pools \
    TORCHINDUCTOR_CACHE_DIR=/data/.cache/torchinductor \
    HF_HOME=/data/.cache/huggingface \
    MPLCONFIGDIR=/tmp/matplotlib

# A C++ compiler for torch.compile: bf16 pools merge through a compiled one-pass kernel
# on the CPU (merger/fused.py; ~3x the eager path), compiled once into TORCHINDUCTOR_CACHE_DIR.
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*

# torch first, alone, from the chosen index: it is the big layer and changes least.
# `pip install .` below then finds torch==2.13.0 satisfied (a local label such as
# +cpu still matches ==2.13.0) and never pulls another build of it.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

WORKDIR /src
COPY . .
# With the lm-eval extra: searches may score lm-evaluation-harness tasks (kind lm_eval).
RUN pip install ".[lm-eval]" \
    && python -c "import torch; assert torch.__version__.split('+')[0] == '${TORCH_VERSION}', torch.__version__"

# Run unprivileged. /data is world-writable (sticky, like /tmp) so compose may run the
# containers as another uid (RECYCLE_UID) to match the owner of bind-mounted
# checkpoints; a named volume mounted at /data copies this mode when first created.
RUN useradd --create-home --uid 1000 recycle \
    && mkdir -p /data/checkpoints \
    && chmod 1777 /data
USER 1000
WORKDIR /data

# api: 8000 (also /metrics); proposer metrics: 9101; worker metrics: 9102.
EXPOSE 8000 9101 9102
CMD ["recycle", "--help"]
