//! Integration tests: real servers on loopback ports, real WebSocket clients.
//!
//! One binary of modules (ripgrep's layout); helpers live in `ws_tests`.

mod abuse;
mod auth;
mod budget;
mod echo;
mod guards;
mod handshake;
mod hub;
mod lifecycle;
mod limits;
mod plugin;
mod tls;
