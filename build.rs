//! Generates the gRPC service code from `proto/` without needing `protoc` on the machine:
//! `protox` (a pure-Rust protobuf compiler) parses the .proto files into a descriptor set,
//! and `tonic_prost_build` turns that into prost messages plus the tonic server and client.
//! The output goes to `OUT_DIR`; `src/api/grpc/proto.rs` includes it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["grpc_service.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        // The client serves the integration tests and the benchmark example.
        .build_client(true)
        // `bytes::Bytes` for every `bytes` field: raw tensor contents are sliced out of the
        // request buffer instead of copied into a fresh `Vec<u8>` each.
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
