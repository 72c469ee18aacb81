//! What every ventana process shares to talk to NATS, and nothing of ventanad itself (no
//! sled, no fold): connecting with credentials ([`connect`]), declaring ventana's streams
//! ([`streams`]), logging events with their `Nats-Msg-Id` and reading a stream back
//! ([`client`]), a private nats-server for development and tests ([`local_nats`]), and the
//! programs' shared set-up: the wall clock, logging to stderr, stopping on a signal.
//!
//! ventanad, the `ventana` CLI, ventana-meta, ventana-sim and the test harness all use it,
//! so an adapter that only publishes events does not drag the daemon along.
#![forbid(unsafe_code)]

pub mod client;
pub mod connect;
pub mod local_nats;
pub mod policy;
pub mod streams;

use std::time::{Duration, SystemTime};

pub use connect::{NatsOptions, connect, connect_once};
use ventana_core::Timestamp;

/// The wall clock as a timestamp. Programs read it here only; ventanad's decisions use the
/// log's timestamps, and only its clock task and API read this.
pub fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_unix_nanos(since.as_nanos() as i64)
}

/// Parses durations such as `2m`, `500ms`, `24h` (for clap's `value_parser`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    ventana_wire::parse_span(text).map(|span| Duration::from_nanos(span.nanos().max(0) as u64))
}

/// How ventana's programs log: to stderr, filtered by `RUST_LOG` (else at `default`), as
/// text or as JSON lines.
pub fn log_to_stderr(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        logger.json().init();
    } else {
        logger.init();
    }
}

/// Turns transparent huge pages off for this process (Linux; elsewhere there is nothing to
/// turn off). The allocator the programs run with (mimalloc) asks for huge pages, and the
/// kernel zeroes all 2 MiB of one at its first touch, and again each time the allocator has
/// handed it back: 14–24 % of the CPU time in profiles of ventanad's batches and of the
/// fold (the kernel's `clear_page_erms`), 7 % left with small pages. Call it first in
/// `main`. Programs started afterwards inherit the setting, so a process that starts others
/// (nats-server) leaves it alone. It fails only on a kernel without the setting, which costs
/// speed, nothing else.
pub fn without_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_thp_disable(true)?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn huge_pages_are_off_for_the_process_that_turned_them_off() {
        super::without_huge_pages().expect("turned off");
        let status = std::fs::read_to_string("/proc/self/status").expect("readable");
        assert!(
            status.lines().any(|line| line == "THP_enabled:\t0"),
            "{:?}",
            status.lines().find(|line| line.starts_with("THP_enabled"))
        );
    }
}
