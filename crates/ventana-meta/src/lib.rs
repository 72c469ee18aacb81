//! ventana-meta: Meta's webhooks in (verified, normalised, published to `VENTANA_IN`).
#![forbid(unsafe_code)]

pub mod normalise;
pub mod webhook;

pub use webhook::{Config, run};
