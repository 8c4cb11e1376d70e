//! Messages, server trait and client generated from `proto/grpc_service.proto` (package
//! `inference`) by `build.rs`. Nothing is written by hand here.

#![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]

tonic::include_proto!("inference");
