# GPU image for training and evaluating HRM-CodeGen.
#   docker build -t hrm-codegen .
#   docker run --gpus all --rm -it -v $PWD/runs:/workspace/hrm-codegen/runs \
#       -v $HOME/.cache/hrm_codegen:/root/.cache/hrm_codegen hrm-codegen \
#       python scripts/train_codegen.py experiment=a100
# The evaluation sandbox uses bubblewrap, which needs user namespaces inside the container:
# add `--security-opt seccomp=unconfined --security-opt apparmor=unconfined` to `docker run`
# when evaluating generated code.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-devel

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    TOKENIZERS_PARALLELISM=false

RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap git \
    && rm -rf /var/lib/apt/lists/*

# flash-attn is pinned: its setup downloads the prebuilt wheel for this image's torch 2.5 / CUDA 12 /
# Python 3.11 (2.8.x ships those), so the build takes minutes, not a from-source CUDA compile that an
# unpinned future release without torch 2.5 wheels would fall back to (MAX_JOBS bounds its memory).
RUN pip install packaging ninja \
    && MAX_JOBS=8 pip install "flash-attn==2.8.3" --no-build-isolation

WORKDIR /workspace/hrm-codegen
# Dependencies first (cached until pyproject.toml changes); torch is already in the base image.
COPY pyproject.toml README.md LICENSE NOTICE ./
COPY hrm_codegen ./hrm_codegen
RUN pip install -e ".[dev,wandb,flash]"
COPY configs ./configs
COPY scripts ./scripts
COPY tests ./tests
COPY docs ./docs

CMD ["python", "scripts/train_codegen.py", "--help"]
