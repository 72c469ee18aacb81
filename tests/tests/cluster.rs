//! ventanad on the three-node cluster of `deploy/nats-cluster.conf` (streams with three
//! replicas): killing the NATS node that leads the streams mid-run loses nothing and
//! publishes nothing twice.

use std::time::Duration;

use ventana_bus::client::publish_events;
use ventana_core::{Event, Policy};
use ventana_tests::nats::NatsCluster;
use ventana_tests::service::{
    assert_outputs_replay_the_log, eventually, spawn_ventanad_with, stream_len,
};
use ventana_wire::subjects::{IN_STREAM, OUT_STREAM};

/// Publishes in chunks, retrying a chunk while a node is away (ids make retries
/// idempotent).
async fn publish_all(js: async_nats::jetstream::Context, events: Vec<Event>) {
    for chunk in events.chunks(1_000) {
        while publish_events(&js, chunk, 16).await.is_err() {
            tokio::task::yield_now().await;
        }
    }
}

/// ventanad, killed if the test fails before stopping it.
struct Ventanad(std::process::Child);

impl Drop for Ventanad {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The node that leads `stream` now.
async fn leader_of(js: &async_nats::jetstream::Context, stream: &str) -> Option<usize> {
    let mut stream = js.get_stream(stream).await.ok()?;
    let info = stream.info().await.ok()?;
    NatsCluster::index_of(info.cluster.as_ref()?.leader.as_deref()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_nats_node_that_leads_the_streams_loses_nothing() {
    let mut cluster = NatsCluster::start();
    let client = ventana_bus::connect(&cluster.options("ventanad"), "cluster-test")
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    eventually(
        "JetStream's meta leader",
        Duration::from_secs(30),
        || async { js.query_account().await.is_ok() },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, _, password) = ventana_tests::nats::USERS[0];
    let urls = cluster.urls();
    let mut ventanad = Ventanad(spawn_ventanad_with(
        &urls,
        &data,
        &[
            "--nats-user",
            "ventanad",
            "--nats-password",
            password,
            "--replicas",
            "3",
        ],
    ));
    eventually("the streams", Duration::from_secs(30), || async {
        leader_of(&js, IN_STREAM).await.is_some() && leader_of(&js, OUT_STREAM).await.is_some()
    })
    .await;

    let at = ventana_bus::now();
    let events: Vec<Event> =
        ventana_sim::build_log(&ventana_sim::seeded_steps(5, 30_000, 2_000, 1))
            .into_iter()
            .map(|mut e| {
                e.occurred_at = at;
                e
            })
            .collect();
    let total = events.len() as u64;
    let publisher = tokio::spawn(publish_all(js.clone(), events));
    eventually(
        "a third of the traffic",
        Duration::from_secs(60),
        || async { stream_len(&js, IN_STREAM).await >= total / 3 },
    )
    .await;
    // Kill the node leading VENTANA_IN (and, if another, VENTANA_OUT's) without warning.
    let leader = leader_of(&js, IN_STREAM).await.expect("a leader");
    cluster.nodes[leader].kill();
    eventually("a new leader", Duration::from_secs(30), || async {
        leader_of(&js, IN_STREAM).await.is_some_and(|l| l != leader)
    })
    .await;
    publisher.await.unwrap();
    cluster.nodes[leader].restart();

    assert_eq!(
        stream_len(&js, IN_STREAM).await,
        total,
        "every event logged once"
    );
    assert_outputs_replay_the_log(&js, &Policy::default(), Duration::from_secs(120)).await;

    std::process::Command::new("kill")
        .args(["-TERM", &ventanad.0.id().to_string()])
        .status()
        .unwrap();
    assert!(
        ventanad.0.wait().unwrap().success(),
        "ventanad stops cleanly"
    );
}
