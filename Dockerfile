# syntax=docker/dockerfile:1
# Multi-stage build: compile mlpserve, fetch ONNX Runtime from the PyPI wheel, ship a slim
# image with the binary, the library next to it, and the bundled model zoo.
#
#   docker build -t mlpserve .
#   docker run --rm -p 8000:8000 -p 8001:8001 mlpserve
#   docker run --rm -p 8000:8000 -v $PWD/my-models:/models mlpserve   # your own repository

FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY scripts scripts
RUN scripts/fetch-onnxruntime.sh
COPY src src
COPY benches benches
# Every workspace member's manifest must be present to build; only the server is built.
COPY crates crates
RUN cargo build --release --locked --bin mlpserve

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tini && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 mlpserve
# The binary looks for libonnxruntime.so next to itself.
COPY --from=build /src/target/release/mlpserve /usr/local/bin/mlpserve
COPY --from=build /src/.onnxruntime/libonnxruntime.so.1.31.1 /usr/local/bin/libonnxruntime.so
COPY models /models
USER 10001
EXPOSE 8000 8001
ENV MLPSERVE_MODEL_REPOSITORY=/models \
    MLPSERVE_LOG_FORMAT=json
# tini forwards SIGTERM so the server drains in-flight requests before exiting.
ENTRYPOINT ["/usr/bin/tini", "--", "mlpserve", "serve"]
