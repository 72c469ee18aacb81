//! sled beside the pipeline: what one write costs when ventanad commits a batch atomically
//! (`Store::commit`, one sled `apply_batch`) and when a projection built offline is written
//! with plain inserts (`Store::put_states`, what `ventana rebuild` does), in batches of 1 000
//! conversations (a consumer batch's order of size) and all at once (rebuild). Each
//! conversation is three writes: its state (one that saw a customer message) and its two
//! index entries. Every case runs twice, in both orders, each into a fresh store.
//!
//! Run: `cargo bench -p ventana-store --bench sled` (`CONVERSATIONS=300000` by default).

use std::time::{Duration, Instant};

use ventana_core::{Channel, Conversation, ConversationKey, Event, EventBody, Policy, Timestamp};
use ventana_store::{Commit, Indexed, Store};

// The allocator ventanad and the CLI run with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn conversations(count: u32, policy: &Policy) -> Vec<(Conversation, Indexed)> {
    let at = Timestamp::from_unix_seconds(1_772_445_600);
    (0..count)
        .map(|n| {
            let key = ConversationKey::new(Channel::WhatsApp, "acme", "1555", n.to_string());
            let event = Event {
                id: format!("wamid.{n}"),
                occurred_at: at,
                logged_at: Some(at),
                conversation: key.clone(),
                body: EventBody::CustomerMessage,
            };
            let mut conversation = Conversation::new(key);
            conversation.apply(&event, policy, &mut Vec::new());
            let indexed = Indexed::of(&conversation, policy);
            (conversation, indexed)
        })
        .collect()
}

/// Writes every conversation in batches of `batch`, into a fresh store; the time to write
/// and flush.
fn write(states: &[(Conversation, Indexed)], batch: usize, atomic: bool) -> Duration {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(dir.path(), 256 << 20).expect("a fresh store");
    let started = Instant::now();
    for chunk in states.chunks(batch) {
        let writes = chunk
            .iter()
            .map(|(conversation, after)| (conversation, Indexed::default(), *after));
        if atomic {
            let mut commit = Commit::new();
            for (conversation, before, after) in writes {
                commit.put_state(conversation, before, after);
            }
            store.commit(commit).expect("committed");
        } else {
            store.put_states(writes).expect("written");
        }
    }
    store.flush().expect("flushed");
    started.elapsed()
}

fn main() {
    let count = std::env::var("CONVERSATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300_000);
    let policy = Policy::default();
    let states = conversations(count, &policy);
    println!("{count} conversations (3 writes each) into a fresh store, per batch size:");
    let mut sizes = vec![1_000, count as usize];
    sizes.dedup();
    for batch in sizes {
        for (label, atomic) in [
            ("one apply_batch", true),
            ("plain inserts", false),
            ("plain inserts", false),
            ("one apply_batch", true),
        ] {
            let elapsed = write(&states, batch, atomic);
            println!(
                "  batches of {batch:>7}, {label:<15}: {:.2} s = {:.2} µs per write",
                elapsed.as_secs_f64(),
                elapsed.as_secs_f64() * 1e6 / (3.0 * count as f64)
            );
        }
    }
}
