# Two images of Sieve, as build targets (see docker-compose.yml):
#   web     the web tier (gunicorn 'web:create_app()'), with requirements-web.txt only:
#           Flask, Celery's client side, the database and S3 clients; no torch.
#   worker  everything in requirements.txt: serving and training workers, Flower and the
#           one-shot setup (migrations, training the default models).
# `docker build --target web .` or `--target worker`; what a container runs is its command.
FROM python:3.11-slim-bookworm AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# curl for the health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 sieve
WORKDIR /app


FROM base AS worker
# Fonts for the filter's outlier data (training).
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install --require-hashes -r requirements.txt
COPY . .
RUN mkdir -p var && chown -R sieve var
USER sieve
CMD ["celery", "-A", "workers", "worker", "-Q", "filter,classify", "--loglevel", "INFO"]


FROM base AS web
COPY requirements-web.txt .
RUN pip install --require-hashes -r requirements-web.txt
COPY . .
RUN mkdir -p var && chown -R sieve var
USER sieve
EXPOSE 8000
CMD ["gunicorn", "-k", "gevent", "-w", "2", "-b", "0.0.0.0:8000", "web:create_app()"]
