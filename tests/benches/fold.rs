//! fold + decide over a realistic mixed log: 1 M events over 100 k conversations, about two
//! weeks of traffic (target ≥ 5 M events/s on one core, README "Performance").
//!
//! Run: `cargo bench -p ventana-tests --bench fold`. Besides criterion's figures it prints
//! the size of a conversation state encoded with the state codec (bincode), and the time to
//! fold one conversation with `COMMENTS` (default 100 000) comments, which must grow
//! linearly with their number (memory is bounded by count, docs/rules.md §1.4 point 4), and
//! the core fold over the same million events spread over 1 000 to 1 000 000 conversations.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rustc_hash::FxHashMap;
use ventana_core::{
    Channel, Conversation, ConversationKey, ConversationToken, Event, EventBody, Policy, Span,
};
use ventana_tests::bench::{FOLD_EVENTS, fold_core, fold_log, fold_with_json, fold_with_outputs};
use ventana_tests::traffic::{build_log, seeded_steps};
use ventana_wire::codec::encode_state;

// The allocator ventanad and the CLI run with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// One Instagram conversation receiving `count` comments ten seconds apart (so every id
/// stays within the dedupe horizon up to 60 480 of them), each sometimes answered with a
/// private reply: folded once, timed, with the final state's encoded size.
fn report_one_conversation_with_comments(count: usize, policy: &Policy) {
    let key = ConversationKey::new(Channel::Instagram, "acme", "page", "commenter");
    let events: Vec<Event> = (0..count)
        .map(|i| {
            let at = ventana_sim::T0.plus(Span::from_seconds(10 * i as i64));
            let body = if i % 4 == 3 {
                EventBody::OutboundMessage(ventana_core::Outbound {
                    sender: ventana_core::Sender::Agent,
                    kind: ventana_core::MessageKind::PrivateReply,
                    tag: None,
                    comment_id: Some(format!("comment-{}", i - 1)),
                    origin: ventana_core::Origin::Request,
                })
            } else {
                EventBody::CustomerComment {
                    comment_id: format!("comment-{i}"),
                }
            };
            Event {
                id: format!("event-{i}"),
                occurred_at: at,
                logged_at: Some(at),
                conversation: key.clone(),
                body,
            }
        })
        .collect();
    let started = std::time::Instant::now();
    let mut conversation = Conversation::new(key);
    let mut effects = Vec::new();
    for event in &events {
        effects.clear();
        black_box(conversation.apply(event, policy, &mut effects));
    }
    let elapsed = started.elapsed();
    println!(
        "one conversation, {count} events (3 in 4 comments, 1 in 4 private replies): {:.3} s, {:.0} events/s, final state {} B",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        encode_state(&conversation).len()
    );
}

/// The core fold over a million events of the same traffic spread over fewer or more
/// conversations: the best of three runs each (the states dropped outside the timing), with
/// the mean encoded state. What an event costs follows what its state holds, not how many
/// states there are.
fn report_conversation_counts(policy: &Policy) {
    for conversations in [1_000u32, 10_000, 100_000, 1_000_000] {
        let events = build_log(&seeded_steps(42, FOLD_EVENTS, conversations, 14));
        let mut best = f64::MAX;
        let mut states = None;
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let folded = fold_core(&events, policy);
            best = best.min(started.elapsed().as_secs_f64());
            states = Some(folded);
        }
        let states = states.expect("folded three times");
        let mean = states
            .values()
            .map(|c| encode_state(c).len())
            .sum::<usize>() as f64
            / states.len() as f64;
        println!(
            "core fold, {} events over {conversations} conversations: {:.0} ms = {:.2} M events/s (best of 3), mean state {mean:.0} B",
            events.len(),
            best * 1e3,
            events.len() as f64 / best / 1e6
        );
    }
}

fn bench(c: &mut Criterion) {
    // As ventanad and the CLI run (ventana_bus::without_huge_pages).
    ventana_bus::without_huge_pages().expect("a kernel that can turn huge pages off");
    let policy = Policy::default();
    let events = fold_log();
    println!(
        "in-memory size of a conversation state: {} B (plus its heap vectors)",
        std::mem::size_of::<Conversation>()
    );
    report_state_sizes(&fold_core(&events, &policy));
    let comments = std::env::var("COMMENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    for count in [comments / 4, comments / 2, comments] {
        report_one_conversation_with_comments(count, &policy);
    }
    println!("outputs per run: {}", fold_with_outputs(&events, &policy));
    report_conversation_counts(&policy);

    let mut group = c.benchmark_group("fold");
    group.throughput(Throughput::Elements(FOLD_EVENTS as u64));
    group.sample_size(10);
    group.bench_function("core: fold + decide, 1M events / 100k conversations", |b| {
        // The states are dropped outside the measurement.
        b.iter_with_large_drop(|| fold_core(black_box(&events), &policy))
    });
    group.bench_function(
        "replay: fold + decide + outputs, 1M events / 100k conversations",
        |b| b.iter(|| fold_with_outputs(black_box(&events), &policy)),
    );
    group.bench_function(
        "replay + JSON: the above with every output written as JSON, 1M events / 100k conversations",
        |b| b.iter(|| fold_with_json(black_box(&events), &policy)),
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
