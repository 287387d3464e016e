# syntax=docker/dockerfile:1
#
# One image for both roles of papertrader; only the command differs:
#   operator: papertrader operator --standalone ...
#   worker:   papertrader run --symbol BTC-EUR ...
# Build:  docker build -t ghcr.io/papertrader/papertrader:0.1.0 .
#
# Stage 1 builds a self-contained virtualenv and slims it (hack/slim-venv.sh); stage 2 copies only that venv onto a
# clean slim base, so no compiler, pip cache, build tree or source checkout reaches the final image.
# hack/build-image.sh builds it with docker, podman or buildah, online or air-gapped, and labels it with the revision.

FROM python:3.11.9-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /src

# binutils gives slim-venv.sh its `strip` (build stage only). STRIP_BINARIES=0 skips it where no Debian mirror is
# reachable; the image is then about 100 MB larger.
ARG STRIP_BINARIES=1
RUN if [ "${STRIP_BINARIES}" = 1 ]; then \
        apt-get update && apt-get install -y --no-install-recommends binutils=2.40-2 && rm -rf /var/lib/apt/lists/*; \
    fi

# Where torch comes from (default: the PyTorch CPU index). Air-gapped builds point it at a local index and may set
# PIP_FIND_LINKS / PIP_EXTRA_INDEX_URL / PIP_CERT (pip reads them from the environment; unset when not passed).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS
ARG PIP_EXTRA_INDEX_URL
ARG PIP_CERT

# CPU-only torch first, from the PyTorch CPU index, so that resolving the project's
# `torch>=2.2` requirement is already satisfied and no CUDA wheels are ever pulled.
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir --no-compile torch==2.13.0 --index-url "${TORCH_INDEX_URL}"

# Project metadata first, then sources: a code change does not invalidate the torch layer.
COPY pyproject.toml README.md ./
COPY worker/ ./worker/
COPY operator/ ./operator/
# Byte code is written once, by compileall after slimming (pip's --no-compile); torch ships one Python 3.12-only file.
COPY hack/slim-venv.sh /usr/local/bin/slim-venv
RUN pip install --no-cache-dir --no-compile . \
    && slim-venv /opt/venv \
    && python -m compileall -q -j 0 -x 'py312_intrinsics' /opt/venv/lib \
    && papertrader --help >/dev/null \
    && python -c 'import torch, papertrader.cli, papertrader_operator'

FROM python:3.11.9-slim-bookworm AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="papertrader" \
      org.opencontainers.image.description="Kubernetes-native crypto paper trading: kopf operator and trading worker" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/papertrader/papertrader" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.9-slim-bookworm"

# The root filesystem is read-only in the cluster: nothing may need to write outside the
# state volume (/var/lib/papertrader) and /tmp (an emptyDir in the pod spec).
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    TORCH_HOME=/tmp/.cache/torch \
    MPLCONFIGDIR=/tmp/.cache/matplotlib

COPY --from=build /opt/venv /opt/venv

WORKDIR /var/lib/papertrader

# Numeric, non-root user and group (runAsNonRoot in Kubernetes can only verify numeric ids).
# No account is created: the process needs no passwd entry, only its own state directory,
# which Kubernetes mounts with fsGroup 10001.
USER 10001:10001

# 8766: worker HTTP (/healthz, /readyz, /health, /metrics); 8765: worker WebSocket;
# 8080: operator HTTP (/healthz, /metrics).
EXPOSE 8766 8765 8080

ENTRYPOINT ["papertrader"]
CMD ["--help"]
