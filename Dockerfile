# syntax=docker/dockerfile:1
# mlpserve image: the stripped release binary, ONNX Runtime, exactly the shared libraries
# those two load (as `ldd` lists them), the model zoo in /models. Nothing else: no shell,
# no package manager, no libc tools. 46 MB: ONNX Runtime 29.4, the binary 9.0, glibc +
# libstdc++ + libgcc_s 5.4, the zoo (models, cards, samples) 2.3.
#
#   docker build -t mlpserve .                           # or scripts/image.sh (docker or podman)
#   docker run --rm --read-only -p 8000:8000 -p 8001:8001 mlpserve
#   docker run --rm --read-only -p 8000:8000 -v $PWD/my-models:/models:ro mlpserve
#
# Why `scratch` + the ldd closure rather than debian:bookworm-slim: the slim image alone is
# ~75 MB of shell, apt, coreutils and libraries the server never loads, and every one of
# those files is something to patch and scan. The closure (glibc, libstdc++, libgcc_s) is
# ~5 MB and comes from the very same Debian release the binary was linked against, so the
# ABI is the one tested. Debugging happens from outside (`kubectl debug`, `podman exec` is
# not available for lack of a shell) or by building with RUNTIME_BASE=debian:bookworm-slim.
#
# GPU image: pass a CUDA runtime image as both bases and the GPU flavour of ONNX Runtime,
# e.g. (ONNX Runtime 1.31.1's CUDA build needs CUDA 13 and cuDNN 9; the CUDA image must have
# glibc >= Debian 12's 2.36, as Ubuntu 24.04 does):
#   docker build --build-arg ORT_FLAVOR=gpu \
#     --build-arg LIBS_BASE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04 \
#     --build-arg RUNTIME_BASE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04 -t mlpserve:gpu .
#   docker run --gpus all ... mlpserve:gpu --execution-provider cuda
# The libraries copied over the CUDA image are then that image's own files (no-op); the
# driver's libcuda comes from the NVIDIA container toolkit at run time.

# Image the shared libraries are taken from (needs sh and ldd).
ARG LIBS_BASE=debian:bookworm-slim
# Image the final stage starts from: `scratch` (default), or a CUDA runtime image.
ARG RUNTIME_BASE=scratch

# --- build: the release binary from the locked dependencies, and ONNX Runtime from PyPI.
# scripts/image.sh replaces this stage with a host build (`--build-context build=<dir>`)
# where no registry is reachable; the paths below are the contract between the two.
FROM rust:1.95-bookworm AS build
ARG ORT_FLAVOR=cpu
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
# Only the script the build runs: editing any other script must not rebuild the binary.
COPY scripts/fetch-onnxruntime.sh scripts/
RUN ORT_FLAVOR="$ORT_FLAVOR" scripts/fetch-onnxruntime.sh
COPY src src
COPY benches benches
# Cargo.toml's release profile strips the binary.
# Every workspace member's manifest must be present to build; only the server is built.
COPY crates crates
RUN cargo build --release --locked --bin mlpserve

# --- libs: the binary, ONNX Runtime and the transitive closure of their shared libraries,
# laid out under /rootfs at their real paths (the loader finds them without ld.so.cache).
FROM ${LIBS_BASE} AS libs
COPY --from=build /src/target/release/mlpserve /rootfs/usr/local/bin/mlpserve
COPY --from=build /src/.onnxruntime/ /rootfs/usr/local/lib/onnxruntime/
RUN set -eu; \
    cd /rootfs; \
    for f in usr/local/bin/mlpserve usr/local/lib/onnxruntime/*.so*; do \
      LD_LIBRARY_PATH=/rootfs/usr/local/lib/onnxruntime ldd "$f"; \
    done \
      | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' \
      | grep -v '^/rootfs/' | sort -u > /tmp/libs; \
    cat /tmp/libs; \
    while read -r lib; do cp -L --parents "$lib" /rootfs/; done < /tmp/libs; \
    mkdir -p /rootfs/etc /rootfs/models; \
    cp /etc/passwd /etc/group /rootfs/etc/; \
    echo 'mlpserve:x:10001:10001:mlpserve:/nonexistent:/usr/sbin/nologin' >> /rootfs/etc/passwd; \
    echo 'mlpserve:x:10001:' >> /rootfs/etc/group

# --- runtime
FROM ${RUNTIME_BASE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="mlpserve" \
      org.opencontainers.image.description="Inference server for MLP-family ONNX models: dynamic batching, KServe V2 over HTTP and gRPC, Prometheus metrics" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.source="$SOURCE" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=libs /rootfs/ /
COPY models /models
# Non-root; numeric so runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000 8001
ENV MLPSERVE_MODEL_REPOSITORY=/models \
    MLPSERVE_ORT_LIB=/usr/local/lib/onnxruntime/libonnxruntime.so \
    MLPSERVE_LOG_FORMAT=json
# The server is PID 1 and handles SIGTERM itself: readiness turns false, new requests get
# 503, admitted ones finish (bounded by --shutdown-timeout), exit 0. It starts no child
# processes, so there is nothing for an init to reap. Probes: GET /v2/health/ready and
# /v2/health/live on port 8000 (no HEALTHCHECK: the image has no HTTP client to run one).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/mlpserve", "serve"]
