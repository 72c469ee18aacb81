//! The `ventana` command line as a library, so tests drive the same code the binary runs.
#![forbid(unsafe_code)]

pub mod dev;
pub mod live;
pub mod replay;
mod table;
