//! The `ventana` command line as a library, so tests drive the same code the binary runs.
#![forbid(unsafe_code)]

/// `println!` that returns the write's error instead of panicking, so a reader that went
/// away (`ventana ... | head`) ends the command quietly (see `main`).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

pub use args::parse_instant;
pub use ventana_service::config::load_policy;

pub mod args;
pub mod dev;
pub mod dev_cluster;
pub mod erase;
pub mod explain;
mod grid;
mod html;
pub mod live;
pub mod log;
pub mod rebuild;
pub mod replay;
pub mod status;
mod table;
pub mod timeline;
pub mod whatif;
