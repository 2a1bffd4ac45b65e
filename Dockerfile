# keel's serving image. Build and run (see docs/deployment.md; CI has no container engine,
# so the image is linted by hadolint in tests/deploy/test_container.py but never built there):
#   docker build -t keel:0.1.0 .
#   docker run --rm -p 8080:8080 -e KEEL_REGISTRY=s3://bucket/registry keel:0.1.0 churn@production

# --- build: a virtual environment with exactly what uv.lock pins, then keel itself ---
FROM python:3.11-slim-bookworm AS build

# The uv the Makefile pins; the interpreter is the image's, never one uv downloads.
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/keel/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.8

WORKDIR /src

# Dependencies first, from the lockfile alone: this layer is rebuilt only when
# pyproject.toml or uv.lock change, not on every edit of the source.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-default-groups --no-install-project --no-cache

# Then keel, installed into the same environment as a wheel (not editable: the
# run stage gets no source tree).
COPY src ./src
RUN uv sync --frozen --no-default-groups --no-editable --no-cache

# --- run: the interpreter, the virtual environment and an unprivileged user; no compilers ---
FROM python:3.11-slim-bookworm

# UID 1001 matches runAsUser in deploy/k8s/deployment.yaml. Artifacts copied from a
# remote registry go to /var/cache/keel (KEEL_CACHE_DIR), the one folder keel writes.
RUN groupadd --gid 1001 keel \
    && useradd --no-log-init --uid 1001 --gid 1001 --no-create-home --home-dir /var/cache/keel keel \
    && mkdir -p /var/cache/keel \
    && chown 1001:1001 /var/cache/keel

COPY --from=build /opt/keel/venv /opt/keel/venv

ENV PATH=/opt/keel/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/cache/keel \
    KEEL_CACHE_DIR=/var/cache/keel \
    KEEL_SERVER__WORKERS=auto

WORKDIR /var/cache/keel
USER 1001
EXPOSE 8080 8081

# Ready only once every model is loaded, verified, golden-checked and warmed up.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/ready', timeout=2)"]

# Exec form: keel is PID 1 and receives SIGTERM itself, so it drains before exiting.
# KEEL_SERVER__WORKERS=auto: one worker process per CPU of the container's quota
# (docker run --cpus, a Kubernetes CPU limit), all on port 8080, one copy of the
# weights (docs/serving.md#workers). Without a quota, one per CPU of the host.
# Port 8081 is the Open Inference Protocol's gRPC service and grpc.health.v1.
# Models come from arguments appended to this (docker run IMAGE churn@production),
# from KEEL_MODELS, or from a config file (--config /etc/keel/keel.toml).
ENTRYPOINT ["keel", "serve", "--host", "0.0.0.0", "--port", "8080", "--grpc-port", "8081"]
CMD []
