# The one image every service of docker-compose.yml runs (SuperLink, SuperNodes, SuperExecs and the
# `register` step): Flower 1.42 plus this project's dependencies, so the ServerApp/ClientApp that a
# SuperExec starts find torch, faiss, ... (runtime `uv sync` is off in the compose environment).
FROM python:3.11-slim

# CPU wheels of torch: their `+cpu` local version outranks PyPI's CUDA build of the same release.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md /tmp/src/
COPY fedras_flwr /tmp/src/fedras_flwr
RUN pip install --extra-index-url "$TORCH_INDEX_URL" /tmp/src && rm -rf /tmp/src

# The user of Flower's own images (uid 49999): mounted credentials and ./outputs must be readable/writable by it.
RUN useradd --uid 49999 --user-group --home-dir /app --no-create-home app \
    && mkdir -p /app/state /app/outputs /app/data /app/credentials \
    && chown -R app:app /app
USER app
