//! Helpers for ventana's integration tests.
#![forbid(unsafe_code)]

pub mod bench;
pub mod fuzz;
pub mod instances;
pub mod nats;
pub mod scenario;
pub mod service;
pub use ventana_sim as traffic;
