//! Integration tests: the real gateway on ephemeral loopback ports in front of real upstream
//! servers, driven by real HTTP clients. One binary, modules by feature.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod admin;
mod admin_crud;
mod admin_fuzz_regressions;
mod auth;
mod balancing;
mod cli;
mod config_errors;
mod database;
mod dns;
mod forward_auth;
mod grpc;
mod hardening;
mod harness;
mod health;
mod hmac_auth;
mod http2;
mod jwks;
mod jwt;
#[path = "../../src/plugins/jwt/test_signer.rs"]
mod jwt_signer;
mod limits;
mod openapi;
mod plugins;
mod proxying;
mod reload;
mod routing;
mod support;
#[path = "../../src/store/test_db.rs"]
mod test_db;
mod tls;
mod upstream_selftest;
mod upstream_tls;
mod watch;
mod websocket;
