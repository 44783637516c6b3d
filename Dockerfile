# The gapstream worker image. CPU stages use it as is; the GPU profile installs a CUDA torch over it.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY agents agents
COPY infra infra
COPY streams streams
ARG EXTRAS=image
RUN pip install --no-cache-dir ".[${EXTRAS}]"
ENV GAPSTREAM_HOME=/data
ENTRYPOINT ["gapstream"]
CMD ["worker"]
