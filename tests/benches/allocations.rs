//! Allocations per event: a figure this machine's speed cannot move. The fold bench's input
//! (1 M events over 100 k conversations, two weeks of traffic) is folded once by the core
//! alone and once with rendered outputs, as `benches/fold.rs` times them, counting the
//! allocator's calls (allocations and reallocations) and bytes asked for.
//!
//! Run: `cargo bench -p ventana-tests --bench allocations`. It counts through the system
//! allocator (the count does not depend on which allocator answers).

use rustc_hash::FxHashMap;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use ventana_core::{Conversation, ConversationToken, Event, Policy, validate};
use ventana_notifier::Fold;
use ventana_tests::traffic::{build_log, seeded_steps};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const EVENTS: usize = 1_000_000;
const CONVERSATIONS: u32 = 100_000;
const DAYS: u32 = 14;

fn report(label: &str, events: usize, stats: stats_alloc::Stats) {
    println!(
        "{label}: {:.2} allocations and {:.0} bytes per event ({} allocations, {} reallocations)",
        (stats.allocations + stats.reallocations) as f64 / events as f64,
        (stats.bytes_allocated as f64 + stats.bytes_reallocated.max(0) as f64) / events as f64,
        stats.allocations,
        stats.reallocations,
    );
}

fn main() {
    let policy = Policy::default();
    let events: Vec<Event> = build_log(&seeded_steps(42, EVENTS, CONVERSATIONS, DAYS));

    let region = Region::new(GLOBAL);
    let mut conversations: FxHashMap<ConversationToken, Box<Conversation>> =
        FxHashMap::with_capacity_and_hasher(CONVERSATIONS as usize, Default::default());
    let mut effects = Vec::new();
    for event in &events {
        validate(event, &policy).expect("generated events are valid");
        let conversation = conversations
            .entry(event.conversation.token())
            .or_insert_with(|| Box::new(Conversation::new(event.conversation.clone())));
        effects.clear();
        conversation.apply(event, &policy, &mut effects);
    }
    report(
        "core: fold + decide (states included)",
        events.len(),
        region.change(),
    );
    drop(conversations);

    let region = Region::new(GLOBAL);
    let mut fold = Fold::new(policy);
    let mut outputs = Vec::new();
    for event in &events {
        outputs.clear();
        fold.apply(event, &mut outputs)
            .expect("generated events are valid");
    }
    report(
        "replay: fold + decide + rendered outputs",
        events.len(),
        region.change(),
    );
}
