//! The soak run: for SOAK_SECONDS (default 120), realistic traffic with bad input mixed in,
//! another client publishing to `ventana.out.>`, `kill -9` of ventanad (every ~15 s) and of
//! nats-server (every ~40 s). Then: every output ventanad published equals a replay of the
//! input log, in order and once, and the states in sled equal the replay's (what `ventana
//! verify` checks). Prints the figures; exits 1 if anything differs.
//!
//! Run: `cargo bench -p ventana-tests --bench soak` (SOAK_SECONDS=600 for ten minutes).

use std::time::{Duration, Instant};

use ventana_bus::client::publish_events;
use ventana_bus::now;
use ventana_core::{Event, Policy};
use ventana_store::Store;
use ventana_tests::fuzz::{Mutator, event_seeds};
use ventana_tests::nats::NatsServer;
use ventana_tests::service::{published_outputs, settle, spawn_ventanad, stream_len};
use ventana_tests::traffic::{SplitMix, build_log, seeded_steps, stamp_live};
use ventana_wire::snapshot_to_json;
use ventana_wire::subjects::{DLQ_STREAM, IN_STREAM};

const FOREIGN: &str = "foreign";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn stored_snapshots(data: &std::path::Path, policy: &Policy) -> Vec<String> {
    let store = Store::open(data, 16 << 20).unwrap();
    let mut snapshots: Vec<_> = store
        .conversations()
        .map(|c| c.unwrap().snapshot(policy))
        .collect();
    snapshots.sort_by_key(|s| s.conversation.token());
    snapshots.iter().map(snapshot_to_json).collect()
}

async fn connect(url: String) -> async_nats::jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url)
        .await
        .unwrap();
    async_nats::jetstream::new(client)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = env("SOAK_SECONDS", 120);
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let js = connect(nats.url()).await;
    let mut ventanad = spawn_ventanad(&nats.url(), &data);
    while js.get_stream(IN_STREAM).await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let url = nats.url();
    // Traffic and bad input, in rounds, retried while NATS is away (ids make it idempotent).
    let traffic = tokio::spawn(async move {
        let js = connect(url).await;
        let mut mutator = Mutator::new(7);
        let seeds = event_seeds();
        let (mut events, mut bad, mut round) = (0u64, 0u64, 0u64);
        while Instant::now() < until {
            let at = now();
            let batch: Vec<Event> = build_log(&seeded_steps(100 + round, 2_000, 400, 1))
                .into_iter()
                .map(|e| stamp_live(e, at, &format!("r{round}")))
                .collect();
            while publish_events(&js, &batch, 16).await.is_err() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            events += batch.len() as u64;
            for n in 0..200 {
                let subject = format!("ventana.in.{}.aaaaaaaaaaaaaaaaaaaaaaaaaa", n % 16);
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("bad-{round}-{n}").as_str());
                let payload = mutator.next(&seeds);
                loop {
                    let ack = js
                        .publish_with_headers(
                            subject.clone(),
                            headers.clone(),
                            payload.clone().into(),
                        )
                        .await;
                    if let Ok(ack) = ack
                        && ack.await.is_ok()
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                bad += 1;
            }
            round += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        (events, bad)
    });
    let url = nats.url();
    let foreign = tokio::spawn(async move {
        let js = connect(url).await;
        let mut sent = 0u64;
        while Instant::now() < until {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("foreign-{sent}").as_str());
            if let Ok(ack) = js
                .publish_with_headers("ventana.out.state_changed.x", headers, FOREIGN.into())
                .await
                && ack.await.is_ok()
            {
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent
    });

    let mut rng = SplitMix::new(11);
    let (mut ventanad_kills, mut nats_kills) = (0, 0);
    let mut next_nats_kill = started + Duration::from_secs(40);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10_000 + rng.below(10_000))).await;
        ventanad.kill().unwrap();
        ventanad.wait().unwrap();
        ventanad_kills += 1;
        if Instant::now() >= next_nats_kill && Instant::now() < until {
            nats.restart();
            nats_kills += 1;
            next_nats_kill += Duration::from_secs(40);
        }
        ventanad = spawn_ventanad(&nats.url(), &data);
    }
    let (events, bad) = traffic.await.unwrap();
    let foreign = foreign.await.unwrap();

    let policy = Policy::default();
    let js = connect(nats.url()).await;
    let settled = settle(&js, &policy, Duration::from_secs(300)).await;
    let published: Vec<String> = published_outputs(&js)
        .await
        .into_iter()
        .filter(|o| o != FOREIGN)
        .collect();
    let outputs_equal = published == settled.outputs;
    let snapshots: Vec<String> = {
        let mut snapshots = settled.fold.snapshots();
        snapshots.sort_by_key(|s| s.conversation.token());
        snapshots.iter().map(snapshot_to_json).collect()
    };
    std::process::Command::new("kill")
        .args(["-TERM", &ventanad.id().to_string()])
        .status()
        .unwrap();
    ventanad.wait().unwrap();
    let states_equal = stored_snapshots(&data, &policy) == snapshots;
    println!(
        "soak: {seconds} s, {events} events and {bad} bad inputs published, {foreign} foreign outputs, \
         {ventanad_kills} × kill -9 ventanad, {nats_kills} × kill -9 nats-server"
    );
    println!(
        "soak: VENTANA_IN {} messages, DLQ {}, outputs {} (replay {}), outputs equal the replay: {outputs_equal}, \
         states in sled equal the replay: {states_equal}, took {:.0} s with the final catch-up",
        stream_len(&js, IN_STREAM).await,
        stream_len(&js, DLQ_STREAM).await,
        published.len(),
        settled.outputs.len(),
        started.elapsed().as_secs_f64()
    );
    if !(outputs_equal && states_equal) {
        std::process::exit(1);
    }
}
