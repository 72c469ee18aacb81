//! ventana-meta: Meta's webhooks in (verified, normalised, published to `VENTANA_IN`) and
//! the send gateway out (ventana decides, the Graph API delivers).
#![forbid(unsafe_code)]

mod app;
pub mod auth;
pub mod config;
pub mod contacts;
pub mod gateway;
pub mod graph;
pub mod listen;
pub mod metrics;
pub mod normalise;
pub mod server;
pub mod tokens;
pub mod webhook;

pub use server::{Config, run};
