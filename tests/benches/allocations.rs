//! Allocations per event: a figure this machine's speed cannot move. The fold bench's input
//! (1 M events over 100 k conversations, two weeks of traffic) is folded once by the core
//! alone, once with rendered outputs and once with them written as JSON, as
//! `benches/fold.rs` times them, and then decoded from its JSON lines, counting the
//! allocator's calls (allocations and reallocations) and bytes asked for. Each stage is one
//! function of `ventana_tests::bench`, so callgrind can count its instructions alone
//! (`--toggle-collect='ventana_tests::bench::decode_all*'`, see README "Performance").
//!
//! Run: `cargo bench -p ventana-tests --bench allocations`. It counts through the system
//! allocator (the count does not depend on which allocator answers).

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use ventana_core::Policy;
use ventana_tests::bench::{
    as_json, decode_all, fold_core, fold_log, fold_with_json, fold_with_outputs,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Runs `work`, printing what it asked of the allocator per event, and returns its result
/// (dropped by the caller after the count: what it built is counted, its freeing is not).
fn counted<T>(label: &str, events: usize, work: impl FnOnce() -> T) -> T {
    let region = Region::new(GLOBAL);
    let result = work();
    let stats = region.change();
    println!(
        "{label}: {:.2} allocations and {:.0} bytes per event ({} allocations, {} reallocations)",
        (stats.allocations + stats.reallocations) as f64 / events as f64,
        (stats.bytes_allocated as f64 + stats.bytes_reallocated.max(0) as f64) / events as f64,
        stats.allocations,
        stats.reallocations,
    );
    result
}

fn main() {
    let policy = Policy::default();
    let events = fold_log();
    let count = events.len();
    drop(counted(
        "core: fold + decide (states included)",
        count,
        || fold_core(&events, &policy),
    ));
    counted("replay: fold + decide + rendered outputs", count, || {
        fold_with_outputs(&events, &policy)
    });
    counted(
        "replay + JSON: the above with every output written as JSON",
        count,
        || fold_with_json(&events, &policy),
    );
    let lines = as_json(&events);
    counted("decoding: every event read from its JSON", count, || {
        decode_all(&lines)
    });
}
