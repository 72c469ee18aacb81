//! The `ventana` command line as a library, so tests drive the same code the binary runs.
#![forbid(unsafe_code)]

pub mod replay;
mod table;
