# One image for every segpipe role (api, gpu worker, cpu worker, beat, flower); the command picks it.
# torch 2.14.1 wheels bundle their CUDA libraries: the GPU worker needs only the NVIDIA container
# runtime on the host, not a CUDA base image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SEGPIPE_HOME=/var/lib/segpipe
RUN apt-get update && apt-get install -y --no-install-recommends libglib2.0-0 libgl1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 segpipe

WORKDIR /app
COPY pyproject.toml README.md ./
COPY requirements/deploy.lock ./requirements/
COPY segpipe ./segpipe
COPY workers ./workers
COPY configs ./configs
# The runtime and Flower exactly as locked (every file hash-checked), then segpipe itself.
RUN pip install --require-hashes -r requirements/deploy.lock && pip install --no-deps .

USER segpipe
EXPOSE 8000
CMD ["segpipe", "api", "--host", "0.0.0.0", "--port", "8000"]
