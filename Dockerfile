# syntax=docker/dockerfile:1
# Build: docker build -t workflow-runs-exporter .
# Run:   docker run -p 9855:9855 -v exporter-state:/var/lib/workflow-runs-exporter \
#          -v "$PWD/config.yaml:/etc/workflow-runs-exporter/config.yaml:ro" --read-only workflow-runs-exporter

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Builder: builds the wheel and installs it with its dependencies into a virtualenv.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install ./ \
    && /opt/venv/bin/python -m pip uninstall --yes pip setuptools wheel

# Runtime: the installed package only; no pip, no compilers, no sources.
FROM ${PYTHON_IMAGE}
ARG UID=10001
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The base image's own pip and setuptools are build tools too: removed. The state lives on a
# volume, so the root filesystem can be mounted read-only.
RUN python -m pip uninstall --yes pip setuptools wheel \
    && groupadd --system --gid "${UID}" exporter \
    && useradd --system --uid "${UID}" --gid exporter --no-create-home --shell /usr/sbin/nologin exporter \
    && mkdir -p /var/lib/workflow-runs-exporter /etc/workflow-runs-exporter \
    && chown exporter:exporter /var/lib/workflow-runs-exporter
COPY --from=build /opt/venv /opt/venv
WORKDIR /var/lib/workflow-runs-exporter
VOLUME ["/var/lib/workflow-runs-exporter"]
USER ${UID}:${UID}
EXPOSE 9855
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9855/healthz', timeout=4)"]
ENTRYPOINT ["workflow-runs-exporter"]
CMD ["run", "--config.file", "/etc/workflow-runs-exporter/config.yaml"]
