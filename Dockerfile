# The one image every service of docker-compose.yml runs (SuperLink, SuperNodes, SuperExecs and the
# `register` step): Flower 1.42 plus this project's dependencies, so the ServerApp/ClientApp that a
# SuperExec starts find numpy, faiss, ... (runtime `uv sync` is off in the compose environment).
#
#   docker build -t fedras-flwr:latest .                              # from PyPI, on python:3.11-slim
#   docker build --build-arg EXTRAS=neumf -t fedras-flwr:neumf .      # + CPU torch, for model=neumf
#   pip wheel -w wheelhouse . hatchling                               # air-gapped device: wheels made elsewhere,
#   docker build --build-arg OFFLINE=1 --build-arg BASE_IMAGE=<local python 3.11 image> -t fedras-flwr:latest .
#
# `RUN --mount` below needs BuildKit: Docker >= 23 (its default builder), `docker buildx`, or podman/buildah.
# BASE_IMAGE: any Debian-like image with Python >= 3.11 and its venv module (scripts/compose_smoke.py builds
# one from Debian packages where no registry is reachable). The MF job (the default) needs no torch, so the
# default image carries no torch and no GPU library.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# EXTRAS: the project's optional dependencies to install ("neumf": torch, CPU wheels from TORCH_INDEX_URL, whose
# `+cpu` local version outranks PyPI's CUDA build). OFFLINE=1: install only from ./wheelhouse, no index.
ARG EXTRAS=""
ARG OFFLINE=0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH

# A venv: Debian's system Python refuses `pip install` (PEP 668), and the SuperExecs find flwr-*app on PATH.
RUN python3 -m venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md /tmp/src/
COPY fedras_flwr /tmp/src/fedras_flwr
# The wheelhouse is bind-mounted, not copied, so its wheels never become an image layer.
RUN --mount=type=bind,source=wheelhouse,target=/tmp/wheelhouse \
    if [ "$OFFLINE" = 1 ]; then set -- --no-index; elif [ -n "$EXTRAS" ]; then set -- --extra-index-url "$TORCH_INDEX_URL"; fi \
    && pip install "$@" --find-links /tmp/wheelhouse "/tmp/src${EXTRAS:+[$EXTRAS]}" \
    && rm -rf /tmp/src

# The user of Flower's own images (uid 49999): mounted credentials and ./outputs must be readable/writable by it.
RUN useradd --uid 49999 --user-group --home-dir /app --no-create-home app \
    && mkdir -p /app/state /app/outputs /app/data /app/credentials \
    && chown -R app:app /app
USER app
