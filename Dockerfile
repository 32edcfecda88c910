FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY projections projections
COPY consumers consumers
COPY scheduler scheduler
COPY infra infra
RUN pip install --no-cache-dir .
ENV CASELOG_DATA_DIR=/data
VOLUME /data
ENTRYPOINT ["caselog"]
CMD ["--help"]
