//! What the live benches share: their size from the environment, a backlog stamped now, and
//! a process's peak memory.

use std::hint::black_box;

use rustc_hash::FxHashMap;
use ventana_core::{Conversation, ConversationToken, Event, Policy, validate};
use ventana_notifier::Fold;

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

/// CPU seconds (user + system) process `pid` has used so far.
pub fn cpu_seconds(pid: u32, ticks_per_second: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (in parentheses): state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / ticks_per_second
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), which `/proc` counts CPU time in.
pub fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The fold benches' input (`benches/fold.rs`, `benches/allocations.rs`): 1 M realistic mixed
/// events over 100 k conversations, about two weeks of traffic.
pub const FOLD_EVENTS: usize = 1_000_000;
/// How many conversations the fold benches' events fall on.
pub const FOLD_CONVERSATIONS: u32 = 100_000;

/// The fold benches' log.
pub fn fold_log() -> Vec<Event> {
    build_log(&seeded_steps(42, FOLD_EVENTS, FOLD_CONVERSATIONS, 14))
}

/// The core alone: validate, find the conversation, advance, decide and evolve.
pub fn fold_core(
    events: &[Event],
    policy: &Policy,
) -> FxHashMap<ConversationToken, Box<Conversation>> {
    // Sized up front, as a store's index would be: the figure is about folding, not rehashing.
    let mut conversations: FxHashMap<ConversationToken, Box<Conversation>> =
        FxHashMap::with_capacity_and_hasher(FOLD_CONVERSATIONS as usize, Default::default());
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

/// What `ventana replay` and the service run: the core plus rendered outputs (ids,
/// details). Returns how many outputs there were.
pub fn fold_with_outputs(events: &[Event], policy: &Policy) -> usize {
    fold_writing(events, policy, |_| 1)
}

/// [`fold_with_outputs`] with every output written as the JSON ventanad publishes and
/// `ventana replay` prints. Returns how many bytes that was.
pub fn fold_with_json(events: &[Event], policy: &Policy) -> usize {
    fold_writing(events, policy, |output| {
        ventana_wire::output_to_json(output).len()
    })
}

/// `events` as the JSON lines an adapter publishes (what [`decode_all`] reads).
pub fn as_json(events: &[Event]) -> Vec<String> {
    events.iter().map(ventana_wire::event_to_json).collect()
}

/// Decodes every line as ventanad and `ventana rebuild` decode their input. Returns how
/// many events that was.
pub fn decode_all(lines: &[String]) -> usize {
    for line in lines {
        black_box(ventana_wire::parse_event(line).expect("generated events decode"));
    }
    lines.len()
}

/// Folds `events` with rendered outputs, summing `write` over the outputs.
fn fold_writing(
    events: &[Event],
    policy: &Policy,
    write: impl Fn(&ventana_notifier::Output) -> usize,
) -> usize {
    let mut fold = Fold::new(policy.clone());
    let mut outputs = Vec::new();
    let mut total = 0;
    for event in events {
        outputs.clear();
        fold.apply(event, &mut outputs)
            .expect("generated events are valid");
        total += outputs.iter().map(&write).sum::<usize>();
    }
    total
}
