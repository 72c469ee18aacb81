//! The `ventana` command line as a library, so tests drive the same code the binary runs.
#![forbid(unsafe_code)]

pub use args::parse_instant;
pub use ventana_service::config::load_policy;

pub mod args;
pub mod dev;
pub mod erase;
pub mod explain;
mod html;
pub mod live;
pub mod log;
pub mod rebuild;
pub mod replay;
mod table;
pub mod timeline;
pub mod whatif;
