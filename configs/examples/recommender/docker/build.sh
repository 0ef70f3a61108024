#!/usr/bin/env bash
# Builds the recommender's images on this machine's Docker engine; nothing
# is pulled (there need be no registry). Run it on every node that has
# Docker (or `docker save recommender-serving:1 | ssh NODE docker load`).
#
#   sudo configs/examples/recommender/docker/build.sh [TAG]   # TAG defaults to 1
#
# 1. The base image `shoal-recommender-python:bookworm`: Debian's python3 in
#    a root filesystem made with debootstrap (about 40 s and 60 MB of
#    packages from the Debian mirror, once; `docker import`).
# 2. One image per service, `recommender-<service>:TAG`, from ../app.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tag="${1:-1}"
base=shoal-recommender-python:bookworm
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if ! docker image inspect "$base" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || {
    echo "build.sh: debootstrap is needed for the base image (apt-get install debootstrap)" >&2; exit 1; }
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include=python3 bookworm "$root" "$mirror" >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import - "$base" >/dev/null
  rm -rf "$root"
  trap - EXIT
  echo "built $base"
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir "$ctx/app"
cp "$here"/../app/*.py "$ctx/app/"
cp "$here/Dockerfile" "$ctx/"
for s in ingestion features training serving ui; do
  docker build -q --build-arg SERVICE="$s" -t "recommender-$s:$tag" "$ctx" >/dev/null
  echo "built recommender-$s:$tag"
done
