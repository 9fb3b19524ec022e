# One image for every function: the command picks it (`serve validate`).
# Build stage: the official Swift image with the C libraries' headers.
FROM swift:6.3-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libhiredis-dev libpq-dev libjwt-dev libcurl4-openssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Resolve dependencies in their own layer, so source edits do not refetch them.
COPY Package.swift ./
RUN swift package resolve
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --product sluice --static-swift-stdlib \
 && install -D .build/release/sluice /out/sluice

# Runtime stage: only the runtime libraries, the binary and the manifests.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libhiredis0.14 libpq5 libjwt0 libcurl4 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /app sluice
WORKDIR /app
COPY --from=build /out/sluice /usr/local/bin/sluice
COPY functions ./functions
ENV SLUICE_FUNCTIONS_DIR=/app/functions
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD ["curl", "-fsS", "http://127.0.0.1:8080/health/live"]
ENTRYPOINT ["sluice"]
CMD ["serve", "intake"]
