//! sled beside the pipeline: what one write costs when ventanad commits a batch atomically
//! (`Store::commit`, one sled `apply_batch`) and when a projection built offline is written
//! with plain inserts (`Store::put_states`, what `ventana rebuild` does), in batches of 1 000
//! conversations (a consumer batch's order of size) and all at once (rebuild). Each
//! conversation is three writes: its state (one that saw a customer message) and its two
//! index entries. Every case runs twice, in both orders, each into a fresh store.
//!
//! Then the outbox as ventanad writes it: commits of 2 500 rows (what a batch of 2 000
//! events outputs), each flushed, and the rows removed 1 000 at a time as the publisher
//! deletes what the stream stored; in chunks (`Store`) and, for comparison, as one sled key
//! per row in one atomic batch (how store layout 2 kept them).
//!
//! Last, a restart on its own: a store of 1 000 000 conversations written as ventanad's
//! commits write them, then opened twice. sled 0.34 writes the snapshot of its page table
//! only when it opens a store, so the first open replays the whole log (what ventanad's first
//! start after a crash does), and the second reads the snapshot the first one wrote.
//!
//! Run: `cargo bench -p ventana-store --bench sled` (`CONVERSATIONS=300000`,
//! `OUTBOX_ROWS=250000`, `RESTART_CONVERSATIONS=1000000` by default; `PARTS=restart`, for
//! example, runs one part: `writes`, `outbox`, `restart`).

use std::time::{Duration, Instant};

use ventana_core::{Channel, Conversation, ConversationKey, Event, EventBody, Policy, Timestamp};
use ventana_store::{Commit, Indexed, OutboxRow, Store};

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

/// Rows per commit, and per removal.
const ROWS_PER_COMMIT: usize = 2_500;
const ROWS_PER_REMOVAL: usize = 1_000;

/// Outbox rows the size of ventanad's outputs (about 400 bytes of JSON), at positions as
/// the pipeline numbers them.
fn outbox_rows(count: usize) -> Vec<(u64, OutboxRow)> {
    (0..count as u64)
        .map(|n| {
            let token = format!("{:026}", n % 100_000);
            let row = OutboxRow {
                subject: format!("ventana.out.state_changed.{token}"),
                id: format!("{token}{n:016x}"),
                payload: format!("{{\"n\":{n},\"padding\":\"{}\"}}", "x".repeat(380)).into(),
            };
            (((n / 2 + 1) << 16) | (n % 2), row)
        })
        .collect()
}

/// Where the outbox rows go: a store (in chunks), or a sled tree with a key per row in one
/// atomic batch, as store layout 2 kept them.
enum Outbox {
    Chunks(Store),
    KeyPerRow { db: sled::Db, tree: sled::Tree },
}

impl Outbox {
    fn open(dir: &std::path::Path, chunked: bool) -> Self {
        if chunked {
            return Self::Chunks(Store::open(dir, 256 << 20).expect("a fresh store"));
        }
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(256 << 20)
            .mode(sled::Mode::HighThroughput)
            .open()
            .expect("a fresh sled");
        let tree = db.open_tree("outbox").expect("a tree");
        Self::KeyPerRow { db, tree }
    }

    fn key(position: u64) -> Vec<u8> {
        let mut key = vec![b'o'];
        key.extend_from_slice(&position.to_be_bytes());
        key
    }

    /// Commits `rows` and flushes, as ventanad commits a batch.
    fn commit(&self, rows: &[(u64, OutboxRow)]) {
        match self {
            Self::Chunks(store) => {
                let mut commit = Commit::new();
                for (position, row) in rows {
                    commit.push_outbox(*position, row);
                }
                store.commit(commit).expect("committed");
                store.flush().expect("flushed");
            }
            Self::KeyPerRow { db, tree } => {
                let mut batch = sled::Batch::default();
                for (position, row) in rows {
                    let mut value = Vec::with_capacity(row.payload.len() + 80);
                    for part in [row.subject.as_bytes(), row.id.as_bytes()] {
                        value.extend_from_slice(&(part.len() as u32).to_be_bytes());
                        value.extend_from_slice(part);
                    }
                    value.extend_from_slice(&row.payload);
                    batch.insert(Self::key(*position), value);
                }
                tree.apply_batch(batch).expect("committed");
                db.flush().expect("flushed");
            }
        }
    }

    /// Removes published rows, as the publisher does.
    fn remove(&self, positions: &[u64]) {
        match self {
            Self::Chunks(store) => store.remove_outbox(positions).expect("removed"),
            Self::KeyPerRow { tree, .. } => {
                let mut batch = sled::Batch::default();
                for position in positions {
                    batch.remove(Self::key(*position));
                }
                tree.apply_batch(batch).expect("removed");
            }
        }
    }
}

/// Commits `rows` to a fresh store and removes them; the time to commit (and flush) and
/// the time to remove.
fn outbox(rows: &[(u64, OutboxRow)], chunked: bool) -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let outbox = Outbox::open(dir.path(), chunked);
    let started = Instant::now();
    for commit_rows in rows.chunks(ROWS_PER_COMMIT) {
        outbox.commit(commit_rows);
    }
    let committed = started.elapsed();
    let started = Instant::now();
    for removed in rows.chunks(ROWS_PER_REMOVAL) {
        let positions: Vec<u64> = removed.iter().map(|(position, _)| *position).collect();
        outbox.remove(&positions);
    }
    (committed, started.elapsed())
}

fn main() {
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let parts = std::env::var("PARTS").unwrap_or_else(|_| "writes,outbox,restart".into());
    let policy = Policy::default();
    if parts.contains("writes") {
        writes(number("CONVERSATIONS", 300_000) as u32, &policy);
    }
    if parts.contains("outbox") {
        outboxes(number("OUTBOX_ROWS", 250_000));
    }
    if parts.contains("restart") {
        restart(number("RESTART_CONVERSATIONS", 1_000_000) as u32, &policy);
    }
}

/// A store of `count` conversations written as ventanad's commits write them (atomic
/// batches of 10 000), then opened twice: the first open replays sled's whole log (what a
/// start after a crash does), the second finds the snapshot the first one wrote.
fn restart(count: u32, policy: &Policy) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let states = conversations(count, policy);
    let started = Instant::now();
    {
        let store = Store::open(dir.path(), 64 << 20).expect("a fresh store");
        for chunk in states.chunks(10_000) {
            let mut commit = Commit::new();
            for (conversation, after) in chunk {
                commit.put_state(conversation, Indexed::default(), *after);
            }
            store.commit(commit).expect("committed");
        }
        store.flush().expect("flushed");
        println!(
            "{count} conversations in atomic commits of 10 000: written in {:.2} s, {:.0} MiB on disk",
            started.elapsed().as_secs_f64(),
            store.size_on_disk().expect("a size") as f64 / 1048576.0
        );
    }
    drop(states);
    for label in [
        "first open (replays the log)",
        "second open (from the snapshot)",
    ] {
        let started = Instant::now();
        let store = Store::open(dir.path(), 64 << 20).expect("the store");
        let opened = started.elapsed();
        println!("  {label}: {:.2} s", opened.as_secs_f64());
        drop(store);
    }
}

fn writes(count: u32, policy: &Policy) {
    let states = conversations(count, policy);
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

fn outboxes(count: usize) {
    let rows = outbox_rows(count);
    println!(
        "{} outbox rows of ~{} bytes, {ROWS_PER_COMMIT} per commit (flushed), removed {ROWS_PER_REMOVAL} at a time:",
        rows.len(),
        rows[0].1.payload.len() + rows[0].1.subject.len() + rows[0].1.id.len()
    );
    for (label, chunked) in [
        ("in chunks", true),
        ("a key per row", false),
        ("a key per row", false),
        ("in chunks", true),
    ] {
        let (committed, removed) = outbox(&rows, chunked);
        let per_row = |elapsed: Duration| elapsed.as_secs_f64() * 1e6 / rows.len() as f64;
        println!(
            "  {label:<13}: commit {:.2} µs, remove {:.2} µs per row ({:.2} s + {:.2} s)",
            per_row(committed),
            per_row(removed),
            committed.as_secs_f64(),
            removed.as_secs_f64()
        );
    }
}
