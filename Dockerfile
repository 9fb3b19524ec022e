# One image for every function: the command picks it (`serve validate`).
#   docker build -t sluice:latest .
#   docker run --env-file .env sluice:latest serve validate
# Where the Swift image cannot be pulled, the same file takes the binary built on a Debian 12
# host by the build stage's own command (scripts/image.sh does that with podman):
#   swift build -c release --static-swift-stdlib && install -D --strip .build/release/sluice .build/image/sluice
#   podman build --build-arg BINARY=host --build-arg BASE_IMAGE=localhost/sluice-base:bookworm -t sluice:latest .
ARG SWIFT_IMAGE=swift:6.3.1-bookworm
ARG BASE_IMAGE=debian:bookworm-slim
# `build` compiles in the Swift image; `host` takes .build/image/sluice from the context.
ARG BINARY=build

# Build stage: the official Swift image with the four C libraries' headers.
FROM ${SWIFT_IMAGE} AS build
# Versions are not pinned: the base image fixes the Debian release, and bookworm's security
# updates replace package versions, so a pinned version would soon stop resolving.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libhiredis-dev libpq-dev libjwt-dev libcurl4-openssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Resolve dependencies in their own layer, so source edits do not refetch them.
COPY Package.swift ./
RUN swift package resolve
# SwiftPM needs every declared target's folder, the test targets' included.
COPY Sources ./Sources
COPY Tests ./Tests
# The Swift runtime linked in, the symbols stripped (161 MB → 83 MB).
RUN swift build -c release --product sluice --static-swift-stdlib \
 && install -D --strip .build/release/sluice /out/sluice

# The host's binary, built by the same command on the same Debian release.
FROM scratch AS host
COPY .build/image/sluice /out/sluice

# The stage the binary comes from, chosen by BINARY.
FROM ${BINARY} AS binary

# Runtime stage: the four runtime libraries, CA certificates (HTTPS webhooks, SMTP STARTTLS),
# the binary and the manifests. No shell tools: the health check is `sluice health`.
FROM ${BASE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libhiredis0.14 libpq5 libjwt0 libcurl4 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home sluice
WORKDIR /app
COPY --from=binary /out/sluice /usr/local/bin/sluice
COPY functions ./functions
COPY datasets ./datasets
ENV SLUICE_FUNCTIONS_DIR=/app/functions
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["sluice", "health", "--port", "8080", "--path", "/health/live"]
ENTRYPOINT ["sluice"]
CMD ["serve", "gateway"]
