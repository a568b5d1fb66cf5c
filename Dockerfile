# One image for every Sinew service; compose.yaml picks the service with `sinew run <name>`.
# Secrets never enter the image: NATS passwords arrive as environment from ./data/secrets/*.env;
# the API tokens file and usage's patient-token key (SINEW_PATIENT_TOKEN_KEY_FILE) are mounted
# read-only at run time (.dockerignore keeps ./data out).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Build with SINEW_UID=$(id -u) (see docs/deployment.md) so the container user can read the
# 0600 files `sinew init` wrote on the host.
ARG SINEW_UID=10001
RUN test "$SINEW_UID" != 0 \
 && groupadd --system --gid "$SINEW_UID" sinew \
 && useradd --system --uid "$SINEW_UID" --gid sinew --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin sinew

WORKDIR /app
COPY pyproject.toml ./
COPY contracts ./contracts
COPY libs ./libs
COPY services ./services
RUN pip install --no-cache-dir . \
 && rm -rf build ./*.egg-info

# Named volumes mounted here start out owned by the service user.
RUN mkdir -p /data && chown sinew:sinew /data
VOLUME ["/data"]

USER sinew
ENV SINEW_DATA_DIR=/data \
    SINEW_HTTP_HOST=0.0.0.0 \
    SINEW_HTTP_PORT=8080
EXPOSE 8080

CMD ["sinew", "--help"]
