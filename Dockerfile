# One image for every entry point: preprocess, train, sample, serve and TensorBoard.
#
#   docker build -t charrnn:cpu .                                                 # CPU (the default)
#   docker build -t charrnn:cuda --build-arg TORCH_INDEX=https://pypi.org/simple .  # CUDA
#
# The CUDA image needs no CUDA base: PyPI's Linux wheels of torch carry their own CUDA libraries,
# and the NVIDIA container toolkit on the host supplies the driver. A PyTorch index such as
# https://download.pytorch.org/whl/cu130 picks another CUDA version.
# compose.yaml builds and runs it; code lives in /app, data in /data (mount it).
# BASE_IMAGE: another Debian-based image with Python >= 3.10 and its venv module (CI builds on a stand-in).
ARG BASE_IMAGE=python:3.12.12-slim-trixie

FROM ${BASE_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
# binutils: strip, for the slimming step below (this stage only).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir --index-url "$TORCH_INDEX" "torch==$TORCH_VERSION"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY charrnn ./charrnn
# torch is already satisfied, so this adds only the rest (from PyPI), as a regular (not editable) install.
RUN pip install --no-cache-dir "./[serve]"
# What no entry point of the image uses: torch's C++ headers (there is no compiler here to use them),
# its C++ test programs and protoc (torch_shm_manager stays: DataLoader workers share memory through
# it), the test suites of the other packages, and the symbol tables of torch's shared libraries (their
# dynamic symbols stay). About 300 MB of the CPU image.
RUN site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \
    && rm -rf "$site/torch/include" "$site/torch/test" \
    && find "$site/torch/bin" -mindepth 1 -maxdepth 1 ! -name torch_shm_manager -exec rm -rf {} + \
    && find "$site" -depth -type d -name tests ! -path "$site/torch/*" -exec rm -rf {} + \
    && strip --strip-unneeded "$site"/torch/lib/*.so* \
    && python -c "import torch, lightning, charrnn.cli, charrnn.serve, tensorboard"

FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN useradd --create-home --uid 1000 --user-group charrnn \
    && mkdir -p /data/generated /data/checkpoints \
    && chown -R charrnn:charrnn /data
COPY --from=build /opt/venv /opt/venv
COPY docker/entrypoint.sh /usr/local/bin/charrnn-entrypoint
WORKDIR /app
COPY train.py sample.py ./
COPY configs ./configs
COPY callbacks ./callbacks
USER 1000:1000
# Relative paths in the configs (checkpoints/..., lightning_logs/) land in the data directory.
WORKDIR /data
EXPOSE 8080 6006
ENTRYPOINT ["/usr/local/bin/charrnn-entrypoint"]
CMD ["python", "/app/train.py", "--help"]
