# One image for every Sieve process: web tier, serving and training workers, Flower and
# the one-shot setup. Which one a container runs is its command (see docker-compose.yml).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Fonts for the filter's outlier data; curl for health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-dejavu-core curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install --require-hashes -r requirements.txt

COPY . .
RUN useradd --create-home --uid 1000 sieve && mkdir -p var && chown -R sieve var
USER sieve

EXPOSE 8000
CMD ["gunicorn", "-k", "gevent", "-w", "2", "-b", "0.0.0.0:8000", "web:create_app()"]
