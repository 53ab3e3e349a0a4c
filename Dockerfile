# syntax=docker/dockerfile:1
# The one Tailor image: `tailor operator`, `tailor worker --stack NS/NAME`, `tailor api --stack NS/NAME`.
#
#   docker build -t registry.example.com/tailor:0.1.0 .
#
# Built for the restricted Pod Security Standard: it runs as a numeric non-root user (10001, the
# chart's podSecurity.runAsUser), writes nothing to its root filesystem (bytecode is compiled
# at build time, HOME points at /tmp, which the chart mounts as an emptyDir), and needs no
# capabilities. Python packages live in a virtualenv copied from the build stage, so the
# runtime stage has no pip cache, no build tools and no source tree.

# The base images, public by default. Where Docker Hub cannot be reached, pass equivalents:
# `make image` builds them from Debian's own packages (scripts/image.sh, docs/install.md).
# PYTHON_IMAGE needs a `python` (>= 3.11) with venv; RUST_IMAGE cargo and a C compiler.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUST_IMAGE=rust:1-slim-bookworm

# The worker's hot path (native/, Rust): an abi3 wheel, so it serves any CPython >= 3.11.
FROM ${RUST_IMAGE} AS native
RUN apt-get update \
 && apt-get install --yes --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/maturin \
 && /opt/maturin/bin/pip install --no-cache-dir 'maturin>=1.7,<2'
WORKDIR /src/native
COPY native ./
RUN /opt/maturin/bin/maturin build --release --locked --out /wheels

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/tailor
WORKDIR /src
# Dependencies first, so a code change does not reinstall them: install the project's declared
# dependencies from pyproject.toml alone (at the versions CI tested: constraints.txt), then the
# project itself without dependencies. (One line of Python, not a heredoc: Debian bookworm's
# buildah 1.28 and Docker's legacy builder do not read heredocs.)
COPY pyproject.toml constraints.txt README.md ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/requirements.txt
RUN /opt/tailor/bin/pip install --requirement /tmp/requirements.txt --constraint constraints.txt
COPY tailor ./tailor
COPY crds ./crds
COPY operator ./operator
COPY workers ./workers
COPY content_api ./content_api
COPY sdk/tailor.js ./sdk/tailor.js
COPY --from=native /wheels /tmp/wheels
RUN /opt/tailor/bin/pip install --no-deps . /tmp/wheels/*.whl \
 && /opt/tailor/bin/python -m compileall -q /opt/tailor/lib \
 && /opt/tailor/bin/tailor --help > /dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="tailor" \
      org.opencontainers.image.description="Tailor: declarative, real-time content personalization on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 tailor \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /tmp --shell /usr/sbin/nologin tailor
COPY --from=build /opt/tailor /opt/tailor
ENV PATH=/opt/tailor/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
WORKDIR /tmp
# Numeric, so the kubelet can verify runAsNonRoot without looking the name up.
USER 10001:10001
ENTRYPOINT ["tailor"]
CMD ["--help"]
