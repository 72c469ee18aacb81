//! Durability: kill -9 ventanad repeatedly while events flow, and restart NATS under it.
//! Afterwards every output is on VENTANA_OUT exactly once, in order (and its protobuf copy on
//! VENTANA_OUT_PROTOBUF), and the states in sled equal an offline replay of the log.

use std::time::Duration;

use ventana_bus::client::publish_events;
use ventana_bus::now;
use ventana_core::{Event, Policy};
use ventana_store::Store;
use ventana_tests::nats::NatsServer;
use ventana_tests::service::{
    assert_protobuf_copies, caught_up, config, eventually, published_outputs, settle,
    spawn_ventanad_with, start, stored_snapshots, stream_len,
};
use ventana_tests::traffic::{SplitMix, build_log, seeded_steps};
use ventana_wire::snapshot_to_json;
use ventana_wire::subjects::IN_STREAM;

fn live(events: Vec<Event>) -> Vec<Event> {
    let at = now();
    events
        .into_iter()
        .map(|mut e| {
            e.occurred_at = at;
            e
        })
        .collect()
}

/// Publishes in chunks, retrying a chunk while NATS is away (ids make retries idempotent).
async fn publish_all(url: String, events: Vec<Event>) {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    for chunk in events.chunks(2_000) {
        while publish_events(&js, chunk, 16).await.is_err() {
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_nothing_and_publishes_nothing_twice() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);

    let events = live(build_log(&seeded_steps(11, 100_000, 5_000, 1)));
    let total = events.len() as u64;
    let spawn = || spawn_ventanad_with(&nats.url(), &data, &["--protobuf-outputs"]);
    let mut ventanad = spawn();
    eventually("the streams", Duration::from_secs(20), || async {
        js.get_stream(IN_STREAM).await.is_ok()
    })
    .await;
    let publisher = tokio::spawn(publish_all(nats.url(), events));

    let mut rng = SplitMix::new(2026);
    let mut kills = 0;
    let mut kills_while_publishing = 0;
    while kills < 6 {
        // Let it run for a random while, then kill it without warning.
        tokio::time::sleep(Duration::from_millis(200 + rng.below(1200))).await;
        ventanad.kill().unwrap();
        ventanad.wait().unwrap();
        kills += 1;
        if !publisher.is_finished() {
            kills_while_publishing += 1;
        }
        ventanad = spawn();
    }
    publisher.await.unwrap();
    assert!(
        kills_while_publishing >= 1,
        "ventanad was killed while events flowed"
    );
    assert_eq!(stream_len(&js, IN_STREAM).await, total);
    let settled = settle(&js, &Policy::default(), Duration::from_secs(120)).await;
    let outputs = settled.outputs;
    let snapshots: Vec<String> = settled
        .fold
        .snapshots()
        .iter()
        .map(snapshot_to_json)
        .collect();
    let copies = assert_protobuf_copies(&js).await;
    assert_eq!(copies, outputs.len());
    // Graceful stop (SIGTERM) flushes and releases the store.
    std::process::Command::new("kill")
        .args(["-TERM", &ventanad.id().to_string()])
        .status()
        .unwrap();
    assert!(
        ventanad.wait().unwrap().success(),
        "ventanad stops cleanly on SIGTERM"
    );

    let live_outputs = published_outputs(&js).await;
    assert_eq!(
        live_outputs.len(),
        outputs.len(),
        "no output lost, none published twice"
    );
    assert!(
        live_outputs == outputs,
        "outputs equal the replay, in order"
    );
    assert_eq!(
        stored_snapshots(&data),
        snapshots,
        "states in sled equal the replay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_mid_run_loses_nothing() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let service = start(config(&nats.url(), &dir.path().join("data"), None));
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(nats.url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    eventually("the streams", Duration::from_secs(10), || async {
        js.get_stream(IN_STREAM).await.is_ok()
    })
    .await;

    let events = live(build_log(&seeded_steps(12, 20_000, 1_000, 1)));
    let (first, second) = events.split_at(10_000);
    publish_all(nats.url(), first.to_vec()).await;
    nats.restart();
    publish_all(nats.url(), second.to_vec()).await;
    let outputs = settle(&js, &Policy::default(), Duration::from_secs(120))
        .await
        .outputs;
    let live_outputs = published_outputs(&js).await;
    assert_eq!(live_outputs.len(), outputs.len());
    let first_difference = live_outputs.iter().zip(&outputs).position(|(a, b)| a != b);
    assert!(
        first_difference.is_none(),
        "outputs equal the replay, in order; first difference at {first_difference:?}: {:?} vs {:?}",
        first_difference.map(|i| &live_outputs[i]),
        first_difference.map(|i| &outputs[i])
    );
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_ventanad_even_when_nats_is_gone() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let spawn = || spawn_ventanad_with(&nats.url(), &data, &["--protobuf-outputs"]);
    let mut ventanad = spawn();
    eventually("the streams", Duration::from_secs(20), || async {
        js.get_stream(IN_STREAM).await.is_ok()
    })
    .await;
    publish_events(&js, &live(build_log(&seeded_steps(13, 500, 20, 1))), 16)
        .await
        .unwrap();
    eventually("the events folded", Duration::from_secs(20), || {
        caught_up(&js)
    })
    .await;
    // ventanad turns transparent huge pages off for itself as it starts
    // (ventana_bus::without_huge_pages).
    let status = std::fs::read_to_string(format!("/proc/{}/status", ventanad.id())).unwrap();
    assert!(
        status.lines().any(|line| line == "THP_enabled:\t0"),
        "ventanad runs with transparent huge pages off: {:?}",
        status.lines().find(|line| line.starts_with("THP_enabled"))
    );
    nats.kill();
    std::process::Command::new("kill")
        .args(["-TERM", &ventanad.id().to_string()])
        .status()
        .unwrap();
    let exited = {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = ventanad.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    if exited.is_none() {
        ventanad.kill().unwrap();
    }
    assert!(
        exited.is_some(),
        "ventanad stops on SIGTERM within its grace period"
    );
    // It flushed and released the store: the states are there for the next start.
    let store = Store::open(&data, 16 << 20).unwrap();
    assert!(store.checkpoint().unwrap() >= 500);
}
