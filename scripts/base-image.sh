#!/usr/bin/env bash
# Makes the base images the container tests need, from Debian's packages, where no registry can be
# pulled from: `debootstrap --variant=minbase bookworm`, trimmed the way debian:bookworm-slim is
# (no docs, man pages or locales; apt keeps no package lists or archives), imported as
# localhost/sluice-base:bookworm. Then, on that base, local stand-ins for the two server images
# infra/compose.yaml names (redis:7.2-bookworm, postgres:15-bookworm: Debian's redis-server and
# PostgreSQL 15 with the official images' paths, variables and entry point behaviour), so that
# podman-compose runs the file as it is. Each image is made once; FORCE=1 makes them again.
#   scripts/base-image.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/podman-env.sh
source scripts/podman-env.sh
base=localhost/sluice-base:bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [[ -n ${FORCE:-} ]] || ! podman image exists "$base"; then
  root=$(mktemp -d /tmp/sluice-rootfs-XXXXXX)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; echo "debootstrap failed (log: $root.log)" >&2; exit 1; }
  rm -f "$root.log"
  # What debian:bookworm-slim configures: dpkg leaves out documentation, apt cleans up after itself.
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
CONF
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
CONF
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<CONF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
CONF
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$root"/usr/share/{man,groff,info,lintian,linda,locale}/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
  tar -C "$root" -c . | podman import -q --change 'CMD ["bash"]' - "$base" >/dev/null
  rm -rf "$root"
  trap - EXIT
fi

# The server images compose.yaml names, made on the base (so the tags are local stand-ins).
for server in redis postgres; do
  case $server in redis) tag=docker.io/library/redis:7.2-bookworm ;; postgres) tag=docker.io/library/postgres:15-bookworm ;; esac
  if [[ -n ${FORCE:-} ]] || ! podman image exists "$tag"; then
    podman build -q --network host --build-arg BASE_IMAGE="$base" -t "$tag" "scripts/images/$server" >/dev/null
  fi
done
