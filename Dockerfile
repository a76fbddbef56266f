# One image for every entry point: preprocess, train, sample, serve and TensorBoard.
#
#   docker build -t charrnn:cpu .                                                 # CPU (the default)
#   docker build -t charrnn:cuda --build-arg TORCH_INDEX=https://pypi.org/simple .  # CUDA
#
# The CUDA image needs no CUDA base: PyPI's Linux wheels of torch carry their own CUDA libraries,
# and the NVIDIA container toolkit on the host supplies the driver. A PyTorch index such as
# https://download.pytorch.org/whl/cu130 picks another CUDA version.
# compose.yaml builds and runs it; code lives in /app, data in /data (mount it).

FROM python:3.12.12-slim-trixie AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir --index-url "$TORCH_INDEX" "torch==$TORCH_VERSION"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY charrnn ./charrnn
# torch is already satisfied, so this adds only the rest (from PyPI), as a regular (not editable) install.
RUN pip install --no-cache-dir "./[serve]"

FROM python:3.12.12-slim-trixie
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN useradd --create-home --uid 1000 --user-group charrnn \
    && mkdir -p /data/generated /data/checkpoints \
    && chown -R charrnn:charrnn /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY train.py sample.py ./
COPY configs ./configs
USER 1000:1000
# Relative paths in the configs (checkpoints/..., lightning_logs/) land in the data directory.
WORKDIR /data
EXPOSE 8080 6006
# A freshly mounted data directory gets its two subdirectories; a read-only one is left as it is.
ENTRYPOINT ["/bin/sh", "-c", "mkdir -p /data/generated /data/checkpoints 2>/dev/null; exec \"$@\"", "charrnn"]
CMD ["python", "/app/train.py", "--help"]
