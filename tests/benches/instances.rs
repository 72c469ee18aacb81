//! Several ventanad instances on one backlog (README "Performance", "Several instances").
//!
//! For 1, 2 and 4 instances, each on a fresh nats-server holding the same backlog of
//! generated traffic: the wall time until every instance has folded the whole log and every
//! output is published (by the owners of the partitions), and the CPU seconds ventanad (all
//! instances together) and nats-server spent, per event. Every instance folds every event
//! (that is what lets any of them take over at once), so ventanad's CPU per event grows with
//! the number of instances: the figures say by how much, and what the leases, fences and
//! batches add on top.
//!
//! Then one partition holding 100 000 conversations (`--partitions 1`), two instances, live
//! traffic: the takeover time (kill -9 of the owner to the first output stored by the
//! other) and the handover time (SIGTERM of the owner to the first output of the next).
//!
//! Run: `cargo bench -p ventana-tests --bench instances` (EVENTS=200000 by default).

use std::time::{Duration, Instant};

use ventana_bus::client::publish_events;
use ventana_core::{Event, Policy};
use ventana_notifier::Fold;
use ventana_tests::bench::{cpu_seconds, ticks_per_second};
use ventana_tests::instances::{Instance, last_on_fence, owned_by, settled_among};
use ventana_tests::nats::NatsServer;
use ventana_tests::service::{caught_up, outputs_len, publish_live_on, spawn_ventanad_with};

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; there is nothing to list here.
    }
    let count = ventana_tests::bench::env_count("EVENTS", 200_000);
    let events: Vec<Event> = ventana_tests::bench::backlog_stamped_now(11, count, 50_000);
    let mut fold = Fold::new(Policy::default());
    let mut expected = Vec::new();
    for event in &events {
        let _ = fold.apply(event, &mut expected);
    }
    println!(
        "backlog: {count} events over 50 000 conversations, {} outputs",
        expected.len()
    );
    ventana_tests::service::ventanad_binary(); // built before any clock starts
    let ticks = ticks_per_second();
    let mut alone = None;
    // INSTANCES=2 measures that count alone (against one instance's cost measured first).
    let counts: Vec<usize> = match std::env::var("INSTANCES") {
        Ok(n) => vec![1, n.parse().expect("INSTANCES is a number")],
        Err(_) => vec![1, 2, 4],
    };
    for instances in counts {
        let nats = NatsServer::start();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        ventana_bus::streams::declare_streams(&js, &Default::default())
            .await
            .unwrap();
        for chunk in events.chunks(5_000) {
            publish_events(&js, chunk, 16).await.unwrap();
        }
        let nats_pid = nats.pid().unwrap();
        let nats_before = cpu_seconds(nats_pid, ticks);
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let mut running: Vec<_> = (0..instances)
            .map(|i| {
                let name = format!("i{i}");
                spawn_ventanad_with(
                    &nats.url(),
                    &dir.path().join(&name),
                    &["--instance", &name, "--batch", "2000"],
                )
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(900);
        while !(caught_up(&js).await && outputs_len(&js).await >= expected.len() as u64) {
            assert!(Instant::now() < deadline, "the instances did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let ventanad_cpu: f64 = running.iter().map(|p| cpu_seconds(p.id(), ticks)).sum();
        let nats_cpu = cpu_seconds(nats_pid, ticks) - nats_before;
        for process in &mut running {
            process.kill().unwrap();
            process.wait().unwrap();
        }
        let per_event = ventanad_cpu / count as f64 * 1e6;
        let per_instance = per_event / instances as f64;
        let base = *alone.get_or_insert(per_instance);
        println!(
            "{instances} instance(s): {:.0} events/s ({elapsed:.1} s until every instance folded \
             the log and every output was published); ventanad CPU {ventanad_cpu:.1} s = \
             {per_event:.1} µs per event, {per_instance:.1} µs per event per instance \
             ({:+.0} % against one instance); nats-server CPU {nats_cpu:.1} s",
            count as f64 / elapsed,
            (per_instance / base - 1.0) * 100.0,
        );
    }
    takeover_of_a_partition().await;
}

/// Waits (polling every 5 ms) until the last message on partition 0's fence subject is a
/// mark by `name`: its first output stored. Returns how long that took from `since`.
async fn first_output_from(
    js: &async_nats::jetstream::Context,
    name: &str,
    since: Instant,
) -> Duration {
    let deadline = since + Duration::from_secs(60);
    loop {
        if let Some((_, by, true)) = last_on_fence(js, 0).await
            && by == name
        {
            return since.elapsed();
        }
        assert!(Instant::now() < deadline, "no output from {name}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One partition with 100 000 conversations, two instances, live traffic: kill -9 of the
/// owner, then SIGTERM of the next.
async fn takeover_of_a_partition() {
    let conversations = 100_000;
    let count = ventana_tests::bench::env_count("TAKEOVER_EVENTS", 200_000);
    let backlog = ventana_tests::bench::backlog_stamped_now(12, count, conversations);
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let settings = ventana_bus::streams::StreamSettings {
        partitions: 1,
        ..Default::default()
    };
    ventana_bus::streams::declare_streams(&js, &settings)
        .await
        .unwrap();
    for chunk in backlog.chunks(5_000) {
        publish_events(&js, chunk, 1).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let args = ["--partitions", "1", "--batch", "2000"];
    let mut instances = [
        Instance::start(&nats.url(), dir.path(), "a", &args),
        Instance::start(&nats.url(), dir.path(), "b", &args),
    ];
    // Both folded the backlog and joined, and the partition is where the assignment puts
    // it (a handover after the second joined would be measured otherwise).
    let deadline = Instant::now() + Duration::from_secs(600);
    while !(caught_up(&js).await && settled_among(&js, &["a", "b"], 1).await) {
        assert!(
            Instant::now() < deadline,
            "the instances did not fold the backlog"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // More traffic, stamped as it is published (ids of their own: the backlog's generator
    // numbers ids alike, and JetStream would drop them as duplicates).
    let live: Vec<Event> = ventana_tests::traffic::build_log(
        &ventana_tests::traffic::seeded_steps(13, 60_000, 1_000, 1),
    )
    .into_iter()
    .map(|mut event| {
        event.id = format!("live-{}", event.id);
        event
    })
    .collect();
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move { publish_live_on(&js, &live, 1_000, 1).await })
    };
    let owner = |owned_by_a: bool| if owned_by_a { (0, 1) } else { (1, 0) };
    let (dead, next) = owner(!owned_by(&js, "a").await.is_empty());
    first_output_from(&js, instances[dead].name, Instant::now()).await;
    instances[dead].kill();
    let takeover = first_output_from(&js, instances[next].name, Instant::now()).await;
    instances[dead].restart();
    // Back, caught up and joined, it takes the partition back or stands by; then the owner
    // stops.
    let deadline = Instant::now() + Duration::from_secs(600);
    while !settled_among(&js, &["a", "b"], 1).await {
        assert!(
            Instant::now() < deadline,
            "the restarted instance did not join"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (stopping, next) = owner(!owned_by(&js, "a").await.is_empty());
    first_output_from(&js, instances[stopping].name, Instant::now()).await;
    let since = Instant::now();
    instances[stopping].signal("-TERM");
    let handover = first_output_from(&js, instances[next].name, since).await;
    assert!(instances[stopping].wait(), "the owner stops cleanly");
    println!(
        "one partition of {conversations} conversations ({count} events folded by both), 1 000 events/s: \
         takeover after kill -9 of its owner {:.2} s (the lease lives 3 s); handover on SIGTERM {:.2} s",
        takeover.as_secs_f64(),
        handover.as_secs_f64()
    );
    publisher.abort();
}
