#!/usr/bin/env bash
# Builds the image with podman from the repository's Dockerfile, where the Swift image cannot be
# pulled: the base images come from Debian's packages (scripts/base-image.sh), the binary is the
# release build of this Debian 12 host made exactly as the Dockerfile's build stage makes it
# (`--static-swift-stdlib`, stripped), and `--build-arg BINARY=host` has the Dockerfile take it.
# `--format docker`: the OCI format has no HEALTHCHECK, and podman drops it from an OCI image.
# Prints the image's name.
#   scripts/image.sh [TAG]        (default localhost/sluice:latest)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-localhost/sluice:latest}
# shellcheck source=scripts/podman-env.sh
source scripts/podman-env.sh
scripts/base-image.sh
swift build -c release --static-swift-stdlib >&2
install -D --strip .build/release/sluice .build/image/sluice
podman build -q --format docker --network host --build-arg BINARY=host --build-arg BASE_IMAGE=localhost/sluice-base:bookworm \
  -t "$tag" . >/dev/null
echo "$tag"
