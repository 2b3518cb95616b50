# The citybrain image for docker compose: one image, the `citybrain` command selects the role.
FROM python:3.11.14-slim-bookworm
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY sensors_sim ./sensors_sim
COPY models ./models
COPY streams ./streams
COPY store ./store
COPY dashboards ./dashboards
COPY citybrain ./citybrain
COPY bench ./bench
RUN pip install . && useradd --create-home --uid 10001 citybrain && mkdir -p /data && chown citybrain /data
USER citybrain
ENV CITYBRAIN_DATA_DIR=/data CITYBRAIN_WORKER_DATA_DIR=/data/faust
ENTRYPOINT ["citybrain"]
CMD ["--help"]
