//! ventanad on the three-node cluster of `deploy/nats-cluster.conf` (streams with three
//! replicas): killing the NATS node that leads the streams mid-run loses nothing and
//! publishes nothing twice; three instances sharing the partitions, each killed -9 in turn
//! under traffic, lose nothing either, and every instance's store equals the replay.

use std::time::Duration;

use ventana_bus::client::publish_events;
use ventana_core::{Event, Policy};
use ventana_tests::instances::{
    Instance, assert_only_fence_holders_stored, outputs_from, owned_by, shared_fairly,
};
use ventana_tests::nats::NatsCluster;
use ventana_tests::service::{
    assert_outputs_replay_the_log, eventually, publish_live, settle, spawn_ventanad_with,
    stored_snapshots, stream_len,
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

/// How ventanad runs on the cluster: as the user `ventanad` of the shipped users file (the
/// harness's password for it), with three replicas.
const CLUSTER_ARGS: [&str; 6] = [
    "--nats-user",
    "ventanad",
    "--nats-password",
    ventana_tests::nats::USERS[0].2,
    "--replicas",
    "3",
];

/// A client of the cluster once JetStream has a meta leader.
async fn cluster_client(cluster: &NatsCluster) -> async_nats::jetstream::Context {
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
    js
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_nats_node_that_leads_the_streams_loses_nothing() {
    let mut cluster = NatsCluster::start();
    let js = cluster_client(&cluster).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let urls = cluster.urls();
    let mut ventanad = Ventanad(spawn_ventanad_with(&urls, &data, &CLUSTER_ARGS));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_the_cluster_lose_nothing_as_each_is_killed() {
    let cluster = NatsCluster::start();
    let js = cluster_client(&cluster).await;
    let dir = tempfile::tempdir().unwrap();
    let urls = cluster.urls();
    let args = CLUSTER_ARGS;
    let names = ["a", "b", "c"];
    let mut instances = names.map(|name| Instance::start(&urls, dir.path(), name, &args));
    shared_fairly(&js, &names).await;
    let events = ventana_sim::build_log(&ventana_sim::seeded_steps(6, 60_000, 1_000, 1));
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move { publish_live(&js, &events, 1_000).await })
    };
    for victim in &mut instances {
        let partitions = owned_by(&js, victim.name).await;
        eventually("outputs from the victim", Duration::from_secs(30), || {
            outputs_from(&js, &partitions, victim.name)
        })
        .await;
        victim.kill();
        let others: Vec<&str> = names.into_iter().filter(|n| *n != victim.name).collect();
        eventually(
            "the others owning every partition",
            Duration::from_secs(30),
            || async {
                let mut owned = 0;
                for other in &others {
                    owned += owned_by(&js, other).await.len();
                }
                owned == ventana_tests::instances::PARTITIONS as usize
            },
        )
        .await;
        eventually(
            "outputs of the victim's partitions from the others",
            Duration::from_secs(30),
            || async {
                for other in &others {
                    if outputs_from(&js, &partitions, other).await {
                        return true;
                    }
                }
                false
            },
        )
        .await;
        assert!(!publisher.is_finished(), "the traffic outlasts the kills");
        victim.restart();
        shared_fairly(&js, &names).await;
    }
    publisher.await.unwrap();
    let settled = settle(&js, &Policy::default(), Duration::from_secs(120)).await;
    assert_outputs_replay_the_log(&js, &Policy::default(), Duration::from_secs(120)).await;
    assert_only_fence_holders_stored(&js).await;
    // Every instance folded everything: its store is the replay's.
    eventually(
        "every instance folding everything",
        Duration::from_secs(60),
        || async {
            for name in names {
                if ventana_tests::instances::pending_for(&js, name).await != Some(0) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let snapshots: Vec<String> = settled
        .fold
        .snapshots()
        .iter()
        .map(ventana_wire::snapshot_to_json)
        .collect();
    for instance in &mut instances {
        assert!(instance.stop(), "{} stops cleanly", instance.name);
        assert_eq!(
            stored_snapshots(&instance.data),
            snapshots,
            "{}'s store equals the replay",
            instance.name
        );
    }
}
