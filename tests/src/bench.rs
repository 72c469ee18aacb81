//! What the live benches share: their size from the environment, a backlog stamped now, and
//! a process's peak memory.

use ventana_core::Event;

use crate::traffic::{build_log, seeded_steps};

/// The number in environment variable `name` (`default` without one).
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Two weeks of generated traffic, `events` events over `conversations` conversations, every
/// event stamped as happening now (so none is refused for clock skew, and the JetStream
/// timestamp decides), as an adapter would log a backlog.
pub fn backlog_stamped_now(seed: u64, events: usize, conversations: u32) -> Vec<Event> {
    let at = ventana_bus::now();
    build_log(&seeded_steps(seed, events, conversations, 14))
        .into_iter()
        .map(|mut e| {
            e.occurred_at = at;
            e.logged_at = None;
            e
        })
        .collect()
}

/// The peak resident memory of process `pid` (`VmHWM`), in MiB (0 when unknown).
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
