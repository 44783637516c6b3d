# The gapstream worker image. CPU stages use it as is; the GPU profile builds it with TORCH_INDEX_URL pointing at a
# CUDA wheel index, so the pinned torch comes as a CUDA build.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY agents agents
COPY infra infra
COPY streams streams
COPY cli cli
COPY benchmarks benchmarks
COPY ui ui
ARG EXTRAS=image
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX_URL}" ".[${EXTRAS}]"
ENV GAPSTREAM_HOME=/data
# Prometheus /metrics (GAPSTREAM_METRICS_PORT in docker-compose.yml); the web page (`gapstream ui`, EXTRAS=ui).
EXPOSE 9400 8080
ENTRYPOINT ["gapstream"]
CMD ["worker"]
