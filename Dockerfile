# caselog: the CLI as entry point (`serve`, `scheduler`, `relay`, `worker`, ...); docker-compose.yml runs it.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY constraints.txt pyproject.toml README.md ./
COPY domain domain
COPY application application
COPY projections projections
COPY consumers consumers
COPY scheduler scheduler
COPY infra infra
# Every dependency at the version the tests ran with (constraints.txt, `make constraints`).
RUN pip install --constraint constraints.txt .
# Its own unprivileged user, owning only the data dir: heartbeats, the worker's state, and uploaded
# documents in /data/documents (a named volume in docker-compose.yml). Numeric, so an orchestrator's
# "run as non-root" check can verify it.
RUN groupadd --system --gid 10001 caselog \
 && useradd --system --uid 10001 --gid caselog --no-create-home --home-dir /data --shell /usr/sbin/nologin caselog \
 && mkdir -p /data/documents \
 && chown -R 10001:10001 /data \
 && chmod 0750 /data /data/documents
ENV CASELOG_DATA_DIR=/data
USER 10001:10001
ENTRYPOINT ["caselog"]
CMD ["--help"]
