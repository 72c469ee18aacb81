//! fold + decide over a realistic mixed log: 1 M events over 100 k conversations, about two
//! weeks of traffic (DESIGN §7: ≥ 5 M events/s on one core).
//!
//! Run: `cargo bench -p ventana-tests --bench fold`. Besides criterion's figures it prints
//! the size of a conversation state encoded with the state codec (bincode).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rustc_hash::FxHashMap;
use ventana_core::{Conversation, ConversationToken, Event, Policy, validate};
use ventana_notifier::Fold;
use ventana_tests::traffic::{build_log, seeded_steps};
use ventana_wire::codec::encode_state;

const EVENTS: usize = 1_000_000;
const CONVERSATIONS: u32 = 100_000;
const DAYS: u32 = 14;

/// The core alone: validate, find the conversation, advance, decide and evolve.
fn fold_core(events: &[Event], policy: &Policy) -> FxHashMap<ConversationToken, Box<Conversation>> {
    // Sized up front, as a store's index would be: the figure is about folding, not rehashing.
    let mut conversations: FxHashMap<ConversationToken, Box<Conversation>> =
        FxHashMap::with_capacity_and_hasher(CONVERSATIONS as usize, Default::default());
    let mut effects = Vec::new();
    for event in events {
        validate(event, policy).expect("generated events are valid");
        let conversation = conversations
            .entry(event.conversation.token())
            .or_insert_with(|| Box::new(Conversation::new(event.conversation.clone())));
        effects.clear();
        black_box(conversation.apply(event, policy, &mut effects));
    }
    conversations
}

/// What `ventana replay` and the service run: the core plus rendered outputs (ids, details).
fn fold_with_outputs(events: &[Event], policy: &Policy) -> usize {
    let mut fold = Fold::new(policy.clone());
    let mut outputs = Vec::new();
    let mut total = 0;
    for event in events {
        outputs.clear();
        fold.apply(event, &mut outputs)
            .expect("generated events are valid");
        total += outputs.len();
    }
    total
}

fn report_state_sizes(conversations: &FxHashMap<ConversationToken, Box<Conversation>>) {
    let mut sizes: Vec<usize> = conversations
        .values()
        .map(|c| encode_state(c).len())
        .collect();
    sizes.sort_unstable();
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    println!(
        "state size (bincode, format byte included) over {} conversations: mean {mean:.0} B, median {} B, p99 {} B, max {} B",
        sizes.len(),
        sizes[sizes.len() / 2],
        sizes[sizes.len() * 99 / 100],
        sizes[sizes.len() - 1],
    );
}

fn bench(c: &mut Criterion) {
    let policy = Policy::default();
    let events = build_log(&seeded_steps(42, EVENTS, CONVERSATIONS, DAYS));
    println!(
        "in-memory size of a conversation state: {} B (plus its heap vectors)",
        std::mem::size_of::<Conversation>()
    );
    report_state_sizes(&fold_core(&events, &policy));
    println!("outputs per run: {}", fold_with_outputs(&events, &policy));

    let mut group = c.benchmark_group("fold");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    group.bench_function("core: fold + decide, 1M events / 100k conversations", |b| {
        // The states are dropped outside the measurement.
        b.iter_with_large_drop(|| fold_core(black_box(&events), &policy))
    });
    group.bench_function(
        "replay: fold + decide + outputs, 1M events / 100k conversations",
        |b| b.iter(|| fold_with_outputs(black_box(&events), &policy)),
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
