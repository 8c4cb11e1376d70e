#!/usr/bin/env bash
# Builds the container image (default tag mlpserve:latest; IMAGE=name:tag to change it).
#
# - Where a Docker daemon answers: `docker build` of the full multi-stage Dockerfile (the
#   build stage compiles the locked dependencies inside rust:*-bookworm).
# - Else (no daemon, no registry, as on these CI machines): Debian's podman, daemonless.
#   The base image is made from Debian packages with debootstrap (once; reused while
#   `podman image exists` says so), the release binary is built on the host with the
#   locked dependencies, and that build is handed to the Dockerfile's `build` stage with
#   `--build-context build=<dir>`, so the same Dockerfile runs unchanged.
#   The sandbox cannot raise rlimits, hence `--runtime runc` and explicit `--ulimit`s
#   (PODMAN_FLAGS overrides them).
#
# Extra arguments go to `docker build` / `podman build` (e.g. --build-arg ORT_FLAVOR=gpu).
# MLPSERVE_RELEASE_BIN=path reuses an already-built release binary (skips `cargo build`).
# Prints the image size on the last line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

image="${IMAGE:-mlpserve:latest}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
revision="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
source="$(git remote get-url origin 2>/dev/null || true)"
labels=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=$source")

if command -v docker >/dev/null && docker info >/dev/null 2>&1 && [[ "${MLPSERVE_BUILDER:-}" != podman ]]; then
  docker build "${labels[@]}" -t "$image" "$@" .
  echo "image $image: $(docker image inspect "$image" --format '{{.Size}}') bytes"
  exit 0
fi

read -r -a podman_flags <<<"${PODMAN_FLAGS:---runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1000:1000}"

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "== installing podman, runc, debootstrap" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman runc debootstrap >/dev/null
fi

# The Dockerfile's base, made from Debian's own packages (no registry is reachable here).
base="docker.io/library/debian:bookworm-slim"
if ! podman image exists "$base"; then
  mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  echo "== making $base with debootstrap from $mirror" >&2
  rootfs="$(mktemp -d)"
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  tar -C "$rootfs" -c . | podman import - "$base" >/dev/null
fi

# The build stage's output, laid out at the paths the Dockerfile copies from.
bin="${MLPSERVE_RELEASE_BIN:-}"
if [[ -z "$bin" ]]; then
  echo "== cargo build --release" >&2
  cargo build --release --locked --quiet --bin mlpserve
  bin="target/release/mlpserve"
fi
scripts/fetch-onnxruntime.sh >&2
ctx="$root/target/image-context"
rm -rf "$ctx"
mkdir -p "$ctx/src/target/release" "$ctx/src/.onnxruntime"
cp "$bin" "$ctx/src/target/release/mlpserve"
cp -a .onnxruntime/. "$ctx/src/.onnxruntime/"

echo "== podman build $image" >&2
podman build "${podman_flags[@]}" --build-context "build=$ctx" "${labels[@]}" \
  -t "$image" "$@" . >&2
echo "image $image: $(podman image inspect "$image" --format '{{.Size}}') bytes"
