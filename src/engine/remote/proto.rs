//! The KServe v2 messages and client, generated at build time from `proto/kserve_v2.proto`.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("inference");
