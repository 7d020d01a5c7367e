# syntax=docker/dockerfile:1
# `handoff serve` in a container: the labkit runtime and server only (no torch, no notebook,
# no Node). Build from the repository root, run with the store mounted read-only:
#
#   docker build -t labkit-serve .
#   docker run --rm -p 8000:8000 -v /srv/bundles:/models:ro labkit-serve
#
# Host profiles (`handoff serve --tune`, `handoff tune`) are written to $LABKIT_PROFILE_DIR,
# outside the read-only store. Checked without a Docker engine by tests/test_deploy.py.
# More: deploy/README.md.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# serve is required; sign adds --trusted-key (model-signing). EXTRAS=serve gives a smaller image.
ARG EXTRAS=serve,sign
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY . .
RUN pip wheel --wheel-dir /wheels ".[${EXTRAS}]"

FROM ${PYTHON_IMAGE}
ARG EXTRAS=serve,sign
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LABKIT_STORE=/models \
    LABKIT_PROFILE_DIR=/var/lib/labkit/profiles \
    LABKIT_PORT=8000
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels "labkit[${EXTRAS}]" \
    && groupadd --system --gid 10001 labkit \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin labkit \
    && mkdir -p /models /var/lib/labkit/profiles \
    && chown -R 10001:10001 /var/lib/labkit
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-m", "labkit.serve.healthcheck"]
ENTRYPOINT ["handoff", "serve"]
CMD ["/models", "--host", "0.0.0.0", "--port", "8000"]
