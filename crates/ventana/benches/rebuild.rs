//! `ventana rebuild` speed (target >= 300 k events/s, README "Performance"): a backlog of generated traffic in
//! VENTANA_IN on a real nats-server, folded into a fresh sled projection by the same code the
//! command runs; the bare read of the log is timed too, for comparison, and each phase prints
//! the CPU it took per event, this process's and nats-server's.
//!
//! Run: `cargo bench -p ventana --bench rebuild` (EVENTS=1000000, CONVERSATIONS=100000 by
//! default).

use std::time::{Duration, Instant};

use ventana::log::LiveLog;
use ventana_bus::NatsOptions;
use ventana_bus::client::{Start, publish_events};
use ventana_core::Policy;
use ventana_store::Store;
use ventana_tests::bench::{cpu_seconds, env_count, peak_rss_mib, ticks_per_second};
use ventana_tests::nats::NatsServer;
use ventana_tests::traffic::{build_log, seeded_steps};

// The allocator the `ventana` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// The CPU time this process and nats-server spend, phase by phase: on a machine of two
/// cores, what the two spend per event together bounds the rate.
struct Cpu {
    ticks: f64,
    nats: u32,
    /// This process's and nats-server's CPU seconds at the start of the phase.
    start: (f64, f64),
}

impl Cpu {
    fn new(nats: u32) -> Self {
        let ticks = ticks_per_second();
        let mut cpu = Self {
            ticks,
            nats,
            start: (0.0, 0.0),
        };
        cpu.start = cpu.now();
        cpu
    }

    fn now(&self) -> (f64, f64) {
        (
            cpu_seconds(std::process::id(), self.ticks),
            cpu_seconds(self.nats, self.ticks),
        )
    }

    /// Starts a phase here (what came since the last one is not counted).
    fn restart(&mut self) {
        self.start = self.now();
    }

    /// The CPU per event since the phase started, as "this process X µs + nats-server Y µs".
    fn per_event(&mut self, events: u64) -> String {
        let now = self.now();
        let micros = |seconds: f64| seconds * 1e6 / events.max(1) as f64;
        let said = format!(
            "CPU per event: this process {:.1} µs + nats-server {:.1} µs",
            micros(now.0 - self.start.0),
            micros(now.1 - self.start.1)
        );
        self.start = now;
        said
    }
}

fn main() {
    let total = env_count("EVENTS", 1_000_000);
    let conversations = env_count("CONVERSATIONS", 100_000) as u32;
    let nats = NatsServer::start();
    // As the `ventana` binary runs; after nats-server started, which would inherit it.
    ventana_bus::without_huge_pages().expect("a kernel that can turn huge pages off");
    let options = NatsOptions {
        url: nats.url(),
        ..Default::default()
    };
    let log = LiveLog::connect(&options, "rebuild-bench").unwrap();
    log.block_on(async {
        ventana_bus::streams::declare_streams(log.js(), &Default::default())
            .await
            .unwrap();
        let events = build_log(&seeded_steps(42, total, conversations, 14));
        for chunk in events.chunks(100_000) {
            publish_events(log.js(), chunk, 16).await.unwrap();
        }
    });
    println!("backlog: {total} events over {conversations} conversations in VENTANA_IN");
    let rss_before = peak_rss_mib(std::process::id());

    let mut cpu = Cpu::new(nats.pid().expect("nats-server runs"));
    let started = Instant::now();
    let messages: Vec<_> = log.input(None, Start::First).map(|m| m.unwrap()).collect();
    let read = messages.len() as u64;
    let read_time = started.elapsed();
    println!(
        "read the log only:   {read} messages in {:.2} s = {:.0} messages/s; {}",
        read_time.as_secs_f64(),
        per_second(read, read_time),
        cpu.per_event(read)
    );

    let started = Instant::now();
    let decoded = messages
        .iter()
        .filter(|message| ventana_bus::client::logged_event(message, None).is_ok())
        .count() as u64;
    let decode_time = started.elapsed();
    println!(
        "decode only:         {decoded} events (already read) in {:.2} s = {:.0} events/s; {}",
        decode_time.as_secs_f64(),
        per_second(decoded, decode_time),
        cpu.per_event(decoded)
    );

    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&dir.path().join("in-memory"), 256 << 20).unwrap();
        cpu.restart();
        let started = Instant::now();
        let logged = messages.into_iter().map(|message| {
            Ok(ventana::log::Logged {
                position: ventana::log::Position::Sequence(message.sequence),
                event: ventana_bus::client::logged_event(&message, None),
            })
        });
        let rebuilt =
            ventana::rebuild::project(&store, &Policy::default(), logged, |_| {}).unwrap();
        let elapsed = started.elapsed();
        println!(
            "fold + sled only:    {} events (already read) in {:.2} s = {:.0} events/s; {}",
            rebuilt.events,
            elapsed.as_secs_f64(),
            per_second(rebuilt.messages, elapsed),
            cpu.per_event(rebuilt.messages)
        );
    }
    let store = Store::open(&dir.path().join("rebuilt"), 256 << 20).unwrap();
    cpu.restart();
    let started = Instant::now();
    let rebuilt = ventana::rebuild::project(
        &store,
        &Policy::default(),
        log.input_events(None, Start::First),
        |_| {},
    )
    .unwrap();
    let elapsed = started.elapsed();
    println!(
        "rebuild:             {} events into {} conversations in {:.2} s = {:.0} events/s (target >= 300 000); {}",
        rebuilt.events,
        rebuilt.conversations,
        elapsed.as_secs_f64(),
        per_second(rebuilt.messages, elapsed),
        cpu.per_event(rebuilt.messages)
    );
    println!(
        "projection on disk:  {:.0} MiB; peak RSS {:.0} MiB (before the rebuild: {rss_before:.0} MiB, which holds the generated backlog)",
        store.size_on_disk().unwrap() as f64 / (1 << 20) as f64,
        peak_rss_mib(std::process::id())
    );
    drop(store);
    // What `ventana rebuild` does next, so that ventanad's first start on the new projection
    // finds sled's snapshot instead of replaying the rebuild's writes.
    let started = Instant::now();
    Store::snapshot(&dir.path().join("rebuilt")).unwrap();
    println!(
        "reopened once (sled writes its snapshot): {:.2} s",
        started.elapsed().as_secs_f64()
    );
}
