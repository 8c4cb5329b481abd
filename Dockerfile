# The image docker-compose.yml runs as worker, beat and Flower.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md LICENSE-MIT LICENSE-APACHE ./
COPY car_dream ./car_dream
RUN pip install ".[flower]" \
    && useradd --create-home --uid 1000 dream \
    && mkdir -p /data && chown dream /data
USER dream
CMD ["celery", "-A", "car_dream", "worker", "--loglevel", "INFO"]
