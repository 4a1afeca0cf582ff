# fraudstream: the API, worker and dashboard image used by compose.yaml, and the Spark job's image on top of it.
#   docker build --target app -t fraudstream:dev .
#   docker build --target spark -t fraudstream-spark:dev .
FROM python:3.11-slim-bookworm AS app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FRAUD_DATA_DIR=/data

# libgomp1: OpenMP for XGBoost's wheels.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Pinned dependencies first, in their own layer, so code changes do not reinstall them.
COPY requirements/ requirements/
RUN pip install -r requirements/base.lock

# The project and its server extras, held to the same pins as the dev lock.
COPY pyproject.toml README.md ./
COPY src/ src/
RUN pip install '.[redis,kafka,postgres,dashboard]' -c requirements/dev.lock

# Non-root; /data is the shared volume for models and generated data (owned here, so a new named volume is too).
RUN useradd --create-home --uid 10001 fraudstream \
    && mkdir -p /data \
    && chown fraudstream:fraudstream /data
USER fraudstream
WORKDIR /data
VOLUME ["/data"]

EXPOSE 8000 8501
CMD ["fraudstream", "serve", "--host", "0.0.0.0", "--no-with-worker"]

# The Spark streaming job (compose profile "spark"): the same image with a Java runtime and PySpark, held to the
# dev lock's pin. The Kafka connector is fetched by Spark from Maven Central on first start (FRAUD_SPARK_JARS unset).
FROM app AS spark
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
RUN pip install -c /app/requirements/dev.lock pyspark
USER fraudstream
CMD ["fraudstream", "spark", "stream"]
