//! Helpers for ventana's integration tests.
#![forbid(unsafe_code)]

pub mod scenario;
pub mod traffic;
