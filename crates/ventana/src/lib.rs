//! The `ventana` command line as a library, so tests drive the same code the binary runs.
#![forbid(unsafe_code)]

use ventana_core::Timestamp;
pub use ventana_service::config::load_policy;

pub mod dev;
pub mod erase;
pub mod explain;
mod html;
pub mod live;
pub mod log;
pub mod rebuild;
pub mod replay;
mod table;
pub mod whatif;

/// Parses an RFC 3339 instant argument.
pub fn parse_instant(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(text).map_err(|e| e.to_string())
}
