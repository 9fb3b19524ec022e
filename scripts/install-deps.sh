#!/usr/bin/env bash
# Installs what Sluice needs to build and test, from Debian 12's packages, and nothing that is
# already there. Safe to run again and again: a machine with everything installed returns at once.
set -euo pipefail

packages=(
  # C libraries the Swift targets link (CHiredis, CLibPQ, CJWT; CCurl for notify)
  libhiredis-dev libpq-dev libjwt-dev libcurl4-openssl-dev pkg-config
  # the real servers the integration and end-to-end tests run against
  redis-server redis-tools postgresql
  # tools the scripts and tests use (openssl makes the RS256 test keys, wrk drives the gateway bench)
  curl procps python3 python3-venv openssl wrk
  # the example functions in other languages (examples/node-tag) and `sluice new --lang node`
  nodejs
  # the image and its containers (scripts/image.sh, the container tests): podman with runc,
  # netavark and aardvark-dns for the containers' network and names, debootstrap for the base image
  podman runc netavark aardvark-dns iptables catatonit debootstrap
)

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$package")
done

if ((${#missing[@]} > 0)); then
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  # policy-rc.d may refuse to start the system services; the scripts start their own servers.
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

node --version >/dev/null || { echo "node does not run after installing nodejs" >&2; exit 1; }
redis-server --version >/dev/null || { echo "redis-server does not run after installing it" >&2; exit 1; }
/usr/lib/postgresql/15/bin/initdb --version >/dev/null || { echo "PostgreSQL 15 (initdb) is missing after installing postgresql" >&2; exit 1; }
